"""Hooks into Django's password handling."""

from classifier.services import api_token_revoke


class RevokeApiTokenOnPasswordChange:
    """Revoke the user's API token whenever their password changes.

    Listed in AUTH_PASSWORD_VALIDATORS for Django's own "the password changed" notice:
    ``User.save()`` sends it after every ``set_password`` (the password change page, a reset
    link, the admin's set-password form, ``manage.py changepassword``) and never for a hash
    upgrade at sign-in. Someone who had the old password may have taken the token too.
    It judges no password.
    """

    def validate(self, password, user=None):
        return None

    def password_changed(self, password, user=None):
        if user is not None and user.pk is not None:
            api_token_revoke(user=user)

    def get_help_text(self):
        # Shown with the other password rules, so the change pages say it before it happens.
        return "Setting a new password revokes your API token, if you have one."
