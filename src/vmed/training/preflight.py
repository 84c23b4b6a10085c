"""Pre-flight image check: every image a run will read is decoded once, in parallel, before the model is built.

A training run reads its images lazily, batch by batch; without this pass one truncated PNG stops an 8B run hours
in. ``preflight_images`` loads each distinct image with ``vmed.imaging.load_image`` (the loader training uses) in a
thread pool, with a progress bar. Records whose image fails are dropped, each reason kept (``PreflightReport``,
written into the run manifest and printed). Past ``max_bad`` bad images the run refuses to start, listing them:
so many failures mean a wrong image folder or a broken copy, not a few damaged files.
Every process of a distributed launch runs the same check on the same files, so all keep the same records.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vmed.errors import ConfigError

# lazy: vmed.imaging (numpy, PIL, pydicom: about 0.8 s) and tqdm are imported inside the pre-flight pass that uses them

__all__ = ["PreflightReport", "preflight_images", "allowed_bad"]

MAX_LISTED = 20
"""Bad images listed by name in the report and in a refusal (the count is always complete)."""


@dataclass
class PreflightReport:
    """What the image check found in one JSONL: distinct images checked, the bad ones with reasons, rows dropped."""

    source: str
    images: int = 0
    records_skipped: int = 0
    bad: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        listed = sorted(self.bad.items())[:MAX_LISTED]
        return {
            "source": self.source,
            "images_checked": self.images,
            "bad_images": len(self.bad),
            "records_skipped": self.records_skipped,
            "reasons": dict(Counter(_kind(r) for r in self.bad.values())),
            "examples": [{"image": p, "reason": r} for p, r in listed],
        }

    def summary(self) -> str:
        """One line for the log (plus one line per listed bad image)."""
        head = f"preflight {self.source}: {self.images} images checked"
        if not self.bad:
            return head + ", all readable"
        lines = [f"{head}, {len(self.bad)} unreadable: skipped {self.records_skipped} records"]
        lines += [f"  {r}" for _, r in sorted(self.bad.items())[:MAX_LISTED]]
        if len(self.bad) > MAX_LISTED:
            lines.append(f"  ... and {len(self.bad) - MAX_LISTED} more")
        return "\n".join(lines)


def _kind(reason: str) -> str:
    """The error class name a reason starts with (``CorruptImage: ...``), for the manifest's tally."""
    return reason.split(":", 1)[0]


def allowed_bad(max_bad: float, images: int) -> int:
    """How many bad images ``data.max_bad_images`` allows: a fraction of ``images`` below 1, else a count."""
    return int(max_bad * images) if max_bad < 1 else int(max_bad)


def _check(path: Path) -> str | None:
    from vmed.imaging import ImageError, load_image

    try:
        load_image(path)
    except ImageError as e:  # every decoder failure is typed by the loader; its message names the file
        return f"{type(e).__name__}: {e}"
    except OSError as e:  # the file vanished or cannot be read (permissions, I/O)
        return f"{type(e).__name__}: {path}: {e}"
    return None


def preflight_images(
    records: Sequence[Any],
    jsonl_path: str | os.PathLike,
    *,
    max_bad: float,
    key: str,
    progress: bool = True,
    workers: int | None = None,
) -> tuple[list[Any], PreflightReport]:
    """Check the images of ``records`` (image paths relative to ``jsonl_path``); return the records to keep and the
    report. Raises ``ConfigError`` naming ``key`` (e.g. ``data.train``) and listing the bad images when there are more
    than ``max_bad`` allows (``allowed_bad``)."""
    from tqdm import tqdm

    from vmed.data.schema import resolve_image

    paths = [resolve_image(r, Path(jsonl_path)) for r in records]
    distinct = sorted({p for p in paths if p is not None})
    report = PreflightReport(source=str(jsonl_path), images=len(distinct))
    workers = workers or min(8, os.cpu_count() or 1)
    bar = tqdm(total=len(distinct), desc=f"checking images ({Path(jsonl_path).name})", unit=" img",
               disable=not progress or not sys.stderr.isatty(), mininterval=1.0)
    with bar, ThreadPoolExecutor(max_workers=workers) as pool:
        for path, reason in zip(distinct, pool.map(_check, distinct)):
            bar.update(1)
            if reason is not None:
                report.bad[str(path)] = reason
    limit = allowed_bad(max_bad, len(distinct))
    if len(report.bad) > limit:
        listed = "; ".join(r for _, r in sorted(report.bad.items())[:5])
        raise ConfigError(
            f"{key} {jsonl_path}: {len(report.bad)} of {len(distinct)} images cannot be read, more than "
            f"data.max_bad_images={max_bad:g} allows ({limit}). First ones: {listed}. Fix or remove them, check that "
            "the images sit where the JSONL's paths point, or raise data.max_bad_images to skip their records"
        )
    kept = [r for r, p in zip(records, paths) if p is None or str(p) not in report.bad]
    report.records_skipped = len(records) - len(kept)
    return kept, report
