from django.contrib.auth.decorators import login_not_required, login_required
from django.urls import URLPattern, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from classifier.api.views import ImageViewSet, ModelVersionViewSet

app_name = "api"

router = SimpleRouter()
router.register("v1/images", ImageViewSet, basename="image")
router.register("v1/models", ModelVersionViewSet, basename="model")


def _api(pattern: URLPattern) -> URLPattern:
    # The API authenticates itself (token or session) and answers 401; the site's
    # LoginRequiredMiddleware would redirect to the log-in page instead.
    pattern.callback = login_not_required(pattern.callback)
    return pattern


urlpatterns = [
    *[_api(pattern) for pattern in router.urls],
    _api(path("schema/", SpectacularAPIView.as_view(), name="schema")),
    # A page for people: anonymous visitors go to log in, as on the site (DRF's views opt out
    # of LoginRequiredMiddleware, hence the decorator). The split view serves its start-up script
    # as a file, which the Content-Security-Policy allows where an inline one would be refused.
    path("docs/", login_required(SpectacularSwaggerSplitView.as_view(url_name="api:schema")), name="docs"),
]
