"""The dashboard at `/`: server-rendered pages (jinja2) kept live with vendored htmx."""
