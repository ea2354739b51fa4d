"""The slow work the views must not wait for, and the 03:00 job."""

from __future__ import annotations

import time

from django.utils import timezone
from exampleproj.amqptasks import app

from reports.models import Report


@app.task
def build_report(report_id: int) -> str:
    """Pretend to fetch ``url_count`` slow pages (0.05 s each), then store the summary."""
    report = Report.objects.get(pk=report_id)
    report.status = "running"
    report.save(update_fields=["status"])
    for _ in range(report.url_count):
        time.sleep(0.05)
    report.status = "done"
    report.result = f"fetched {report.url_count} pages at {timezone.now():%H:%M:%S}"
    report.save(update_fields=["status", "result"])
    return report.result


@app.task
def nightly_summary() -> str:
    """Every night at 03:00 (AMQPTASKS_BEAT_SCHEDULE): count yesterday's reports."""
    since = timezone.now() - timezone.timedelta(days=1)
    return f"{Report.objects.filter(created__gte=since).count()} reports in the last day"
