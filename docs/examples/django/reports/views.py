"""The view enqueues and returns at once; the detail page shows what the worker wrote."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render

from amqptasks.contrib.django import outbox
from reports.models import Report
from reports.tasks import build_report

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse


def index(request: HttpRequest) -> HttpResponse:
    """GET: the reports. POST: start one (``mode=outbox`` writes it to the outbox instead)."""
    if request.method == "POST":
        count = int(request.POST.get("urls", "100"))
        with transaction.atomic():
            report = Report.objects.create(url_count=count)
            if request.POST.get("mode") == "outbox":
                outbox.enqueue(build_report, (report.pk,))
            else:
                build_report.delay_on_commit(report.pk)
        return redirect("detail", pk=report.pk)
    return render(request, "reports/index.html", {"reports": Report.objects.order_by("-pk")})


def detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The report as the worker left it (reload to follow it)."""
    return render(request, "reports/detail.html", {"report": get_object_or_404(Report, pk=pk)})
