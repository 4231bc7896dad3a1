"""The API's routers, one module per resource: CVs, JDs, matching, health."""
