"""Users: Django's user admin, with deleting a user going through the same service as deleting
one's own account (files included, consented corrections kept, the last superuser refused)."""

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from classifier.services import AccountDeleteRefused, account_delete, account_delete_refusal

admin.site.unregister(get_user_model())


@admin.register(get_user_model())
class AccountAdmin(UserAdmin):
    """Django's user admin, but deleting a user deletes their account as they would: each
    image through ``image_delete`` (files included, consented corrections kept), never a
    cascade that would leave their files behind. The last superuser is refused."""

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and (obj is None or account_delete_refusal(user=obj) is None)

    def delete_model(self, request, obj):
        account_delete(user=obj)

    def delete_queryset(self, request, queryset):
        for user in queryset:
            try:
                account_delete(user=user)
            except AccountDeleteRefused as exc:  # the last superuser, among those selected
                self.message_user(request, f"{user}: {exc}", messages.ERROR)
