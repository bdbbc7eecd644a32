"""The console as an alert channel: what a check changed, printed as it happens."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime

from services import plain_text
from services.findings import FiledCheck
from services.model import ALL_KINDS
from services.text_safety import escape_controls

Write = Callable[[str], None]


def _stdout(text: str) -> None:
    print(text, file=sys.stdout, flush=True)


class ConsoleAlerts:
    """A reconciler listener: new and grown findings, reminders, resolutions and account notices, one block each."""

    def __init__(self, write: Write = _stdout):
        self.write = write

    def __call__(self, filed: FiledCheck) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        result = filed.result
        kinds = "all kinds" if result.kinds == ALL_KINDS else ", ".join(sorted(k.value for k in result.kinds))
        summary = f"[{stamp}] check ({kinds}): {len(result.accounts)} account(s), {len(filed.live)} open finding(s)"
        for status in result.unchecked:
            summary += f"; UNCHECKED {status.account}: {status.error}"
        self.write(escape_controls(summary))
        for finding in filed.new:
            self.write(f"[{stamp}] NEW ALERT\n{plain_text.finding_text(finding)}\n")
        for finding in filed.grown:
            self.write(f"[{stamp}] GREW\n{plain_text.finding_text(finding)}\n")
        for finding in filed.reminded:
            self.write(f"[{stamp}] STILL OPEN\n{plain_text.finding_text(finding)}\n")
        for finding in filed.resolved:
            resolved = f"{finding.market} {finding.side.upper()} on {finding.account}"
            which = f"finding #{finding.id}, {finding.kind.value}"
            self.write(f"[{stamp}] RESOLVED: {escape_controls(resolved)} ({which})\n")
        for notice in filed.notices:
            self.write(f"[{stamp}] NOTICE: {plain_text.notice_text(notice)}\n")
