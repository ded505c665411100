"""Table-side joins of MOS labels and second-opinion scores onto feature tables."""

from __future__ import annotations

__version__ = "0.1.0"
