"""Tools beside the pipeline: `inspect` (where the bits go) and `sample` (drawing from the prior)."""
