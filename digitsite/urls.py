from django.contrib import admin
from django.urls import include, path

from classifier.views.accounts import PasswordChangeView, PasswordResetView
from classifier.views.site import favicon, healthz

admin.site.site_header = "digitsite administration"
admin.site.site_title = "digitsite admin"
# The app list beside every admin page took 300 px of a 1280 px screen from the image list;
# the breadcrumbs and the index lead to the same pages.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico whatever the page says; anonymous visitors too.
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    # Before Django's own: the same URL and name, rate-limited (see the view).
    path("accounts/password_reset/", PasswordResetView.as_view(), name="password_reset"),
    # Wrong old passwords count as failed sign-ins (django-axes), so guessing is paused too.
    path("accounts/password_change/", PasswordChangeView.as_view(), name="password_change"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("classifier.api.urls")),
    path("", include("classifier.urls")),
]

handler400 = "classifier.views.site.bad_request"
handler404 = "classifier.views.site.page_not_found"
handler500 = "classifier.views.site.server_error"
