"""wfnb: durable workflows in a Jupyter notebook (placeholder, filled in below)."""
