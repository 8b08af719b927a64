"""Scaling-law fits (compute frontier power law, Chinchilla parametric form), bootstrap intervals,
architecture comparisons and the `aira eval scaling` report. See docs/scaling-laws.md."""
