"""Two pages: the list (with a form that starts a report) and one report."""

from __future__ import annotations

from django.urls import path
from reports import views

urlpatterns = [
    path("", views.index, name="index"),
    path("reports/<int:pk>/", views.detail, name="detail"),
]
