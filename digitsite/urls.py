from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "digitsite administration"
admin.site.site_title = "digitsite admin"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("classifier.urls")),
]
