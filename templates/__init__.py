"""The default theme, installed as the package `newsletter.templates` (see pyproject.toml)."""
