"""The REST API (Django REST Framework), versioned under /api/v1/."""
