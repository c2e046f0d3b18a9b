"""Neural style transfer: `transfer(content, style, **options) -> PIL.Image` (see
`convlens.style.optimize.StyleOptions` for the options, and `convlens style --help`)."""

from convlens.style.optimize import StyleOptions, StyleResult, run_transfer, transfer

__all__ = ["StyleOptions", "StyleResult", "run_transfer", "transfer"]
