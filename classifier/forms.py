from django import forms
from django.conf import settings
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.forms import PasswordChangeForm, UserCreationForm
from django.core.validators import RegexValidator

from classifier.models import DIGIT_CHOICES, NUMBER_VALIDATOR, DigitImage, Feedback, Prediction, RetrainRun
from classifier.passwords import RevokeApiTokenOnPasswordChange as RevokeApiToken
from classifier.permissions import may_see_all_images
from classifier.selectors import ImageFilters
from ml.serving.preprocessing import ACCEPTED_FORMATS_TEXT
from ml.serving.segment import MAX_DIGITS


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImageField(forms.FileField):
    """Several files in one field. Each file is judged by the upload service, not here, so
    that one bad file (even an empty one) is refused on its own and the others go through."""

    widget = MultipleFileInput

    def clean(self, data, initial=None):
        files = list(data) if isinstance(data, list | tuple) else [data] if data else []
        if self.required and not files:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        return files


class UploadForm(forms.Form):
    images = MultipleImageField(
        label="Digit images",
        help_text=f"{ACCEPTED_FORMATS_TEXT}; up to {settings.UPLOAD_MAX_BYTES // 1_000_000} MB each. "
        "You can choose several at once.",
        widget=MultipleFileInput(attrs={"accept": "image/*", "multiple": True}),
    )

    reading = forms.ChoiceField(
        label="What do they show?",
        choices=DigitImage.Reading.choices,
        initial=DigitImage.Reading.AUTO,
        required=False,
        help_text="Left to the site, each image is read as one digit unless it clearly holds several.",
        widget=forms.RadioSelect,
    )

    training_consent = forms.BooleanField(
        label="If staff correct one of these images, keep the corrected 28x28 version to train the model, "
        "even if I delete the image",
        help_text="Only the small 28x28 picture the model saw and the right answer are kept, with nothing "
        "that leads back to you. Without this, deleting an image deletes everything about it.",
        required=False,
    )

    def clean_reading(self):
        return self.cleaned_data["reading"] or DigitImage.Reading.AUTO

    def clean_images(self):
        files = self.cleaned_data["images"]
        if len(files) > settings.UPLOAD_MAX_FILES:
            raise forms.ValidationError(f"Upload at most {settings.UPLOAD_MAX_FILES} files at once.")
        return files


class AccountDeleteForm(forms.Form):
    """The password, typed again: a session left open is not enough to delete an account.
    Checked through ``authenticate``, so that django-axes counts wrong guesses as at login."""

    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    def __init__(self, *args, request, **kwargs):
        super().__init__(*args, **kwargs)
        self.request = request

    def clean_password(self):
        password = self.cleaned_data["password"]
        user = self.request.user
        if authenticate(self.request, username=user.get_username(), password=password) != user:
            raise forms.ValidationError("That is not your password; nothing was deleted.")
        return password


class CountedPasswordChangeForm(PasswordChangeForm):
    """Django's password change, whose old password is checked through ``authenticate`` so
    that django-axes counts a wrong one as a failed sign-in: after ``AXES_FAILURE_LIMIT`` the
    form (and signing in) is paused for that username and address, as at login."""

    def __init__(self, user, *args, request, **kwargs):
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self):
        old_password = self.cleaned_data["old_password"]
        if authenticate(self.request, username=self.user.get_username(), password=old_password) != self.user:
            raise forms.ValidationError(self.error_messages["password_incorrect"], code="password_incorrect")
        return old_password


class SignUpForm(UserCreationForm):
    """Sign-up whose errors sit under the field they concern: a refused password under the
    password (Django puts it under the confirmation), a mismatch under the confirmation. The
    passwords are kept when only the username was refused, so that only it is typed again."""

    email = forms.EmailField(
        label="E-mail address (optional)",
        required=False,
        help_text="Only to reset your password if you forget it. We send nothing else.",
    )

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The password rules, less the API token's: a new account has no token to revoke.
        rules = [v for v in password_validation.get_default_password_validators() if not isinstance(v, RevokeApiToken)]
        self.fields["password1"].help_text = password_validation.password_validators_help_text_html(rules)

    def validate_password_for_user(self, user, password_field_name="password1"):
        super().validate_password_for_user(user, password_field_name=password_field_name)

    def _post_clean(self):
        super()._post_clean()
        keep = not (self.has_error("password1") or self.has_error("password2"))
        for name in ("password1", "password2"):
            self.fields[name].widget.render_value = keep


SELECT = {"class": "form-select form-select-sm"}


class HistoryFilterForm(forms.Form):
    digit = forms.TypedChoiceField(
        label="Predicted digit",
        choices=[("", "any digit"), *DIGIT_CHOICES],
        coerce=int,
        empty_value=None,
        required=False,
        widget=forms.Select(attrs=SELECT),
    )
    number = forms.CharField(
        label="Number contains",
        max_length=MAX_DIGITS,
        required=False,
        validators=[RegexValidator(r"^[0-9]+$", "Type digits only, such as 58 (which finds 583124).")],
        widget=forms.TextInput(
            attrs={"class": "form-control form-control-sm", "inputmode": "numeric", "placeholder": "e.g. 58"}
        ),
    )
    status = forms.ChoiceField(
        label="Status", choices=[("", "any status")], required=False, widget=forms.Select(attrs=SELECT)
    )
    verdict = forms.ChoiceField(
        label="Verdict",
        choices=[("", "any verdict"), *Prediction.Verdict.choices],
        required=False,
        widget=forms.Select(attrs=SELECT),
    )
    reading = forms.ChoiceField(
        label="Read as",
        choices=[("", "any reading"), *DigitImage.Reading.choices],
        required=False,
        widget=forms.Select(attrs=SELECT),
    )
    below = forms.IntegerField(
        label="Confidence below (%)",
        min_value=1,
        max_value=100,
        required=False,
        widget=forms.NumberInput(attrs={"class": "form-control form-control-sm", "placeholder": "e.g. 80"}),
    )
    flagged = forms.TypedChoiceField(
        label="Flagged",
        choices=[("", "flagged or not"), ("yes", "flagged"), ("no", "not flagged")],
        coerce=lambda v: v == "yes",
        empty_value=None,
        required=False,
        widget=forms.Select(attrs=SELECT),
    )
    everyone = forms.BooleanField(
        label="Everyone's images", required=False, widget=forms.CheckboxInput(attrs={"class": "form-check-input"})
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", "any status"), *DigitImage.Status.choices]
        if not (user and may_see_all_images(user)):
            del self.fields["everyone"]

    def to_filters(self):
        """The valid filters as the selectors take them; an invalid one is left out (and named
        by ``invalid_filters``), the others still apply."""
        if not self.is_bound:
            return ImageFilters()
        self.is_valid()
        data = self.cleaned_data  # only the fields that passed
        below = data.get("below")
        return ImageFilters(
            digit=data.get("digit"),
            number=data.get("number") or "",
            status=data.get("status") or None,
            verdict=data.get("verdict") or None,
            reading=data.get("reading") or None,
            max_confidence=below / 100 if below else None,
            flagged=data.get("flagged"),
            everyone=bool(data.get("everyone")),
        )

    def invalid_filters(self) -> list[str]:
        """Each invalid filter with the value given and why, e.g. 'Predicted digit "-1": ...'."""
        if not self.is_bound:
            return []
        return [
            f'{self.fields[name].label} "{self.data.get(name)}": {" ".join(errors)}'
            for name, errors in self.errors.items()
            if name in self.fields
        ]


NOT_A_DIGIT = "not_a_digit"
# A correction that contradicts a prediction at least this confident is asked about again.
CONFIDENT = 0.99


class ReadingField(forms.CharField):
    """A correction as staff type it: the digits left to right ("7", "583124"), or "not a
    digit", which cleans to None; left empty, "" (no answer)."""

    def __init__(self, **kwargs):
        super().__init__(required=False, max_length=MAX_DIGITS, validators=[NUMBER_VALIDATOR], **kwargs)
        self.widget.attrs.update({"placeholder": "583124 or not a digit", "list": "readings", "autocomplete": "off"})

    def to_python(self, value):
        value = super().to_python(value)
        return None if value.lower() in (NOT_A_DIGIT, "not a digit") else value


class FlagImagesForm(forms.Form):
    """What each selected image really reads: one answer for all of them (``correct_number``)
    or one per image (``number_<pk>``, which wins), never a default; "not a digit" is None.
    Overruling a prediction of 99% or more needs ``confirm``."""

    correct_number = ReadingField(label="Correct reading (every image without its own answer)")
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    confirm = forms.BooleanField(
        label="Yes: these corrections overrule predictions the model was at least 99% sure of", required=False
    )

    def __init__(self, *args, images, **kwargs):
        super().__init__(*args, **kwargs)
        self.images = list(images)
        for image in self.images:
            self.fields[f"number_{image.pk}"] = ReadingField(label=image.original_name)
        self.contradicted: list = []

    def per_image_fields(self):
        return [(image, self[f"number_{image.pk}"]) for image in self.images]

    def clean(self):
        cleaned = super().clean()
        answers, missing = {}, []
        for image in self.images:
            own = cleaned.get(f"number_{image.pk}", "")
            answer = own if own != "" else cleaned.get("correct_number", "")
            if answer == "":
                missing.append(image.original_name)
            else:
                answers[image.pk] = answer
        if missing:
            raise forms.ValidationError(f"Write what each image reads (no answer for: {', '.join(missing)}).")
        self.contradicted = [
            image
            for image in self.images
            if (prediction := image.prediction_or_none) is not None
            and prediction.confidence >= CONFIDENT
            and answers[image.pk] != prediction.reading
        ]
        if self.contradicted and not cleaned.get("confirm"):
            self.add_error(
                "confirm",
                "The model was at least 99% sure of "
                + ", ".join(f"{i.original_name} ({i.prediction.reading})" for i in self.contradicted)
                + ": check the answer, then tick this box.",
            )
        cleaned["answers"] = answers
        return cleaned


# A reading typed on a phone: the digit keypad. The server says what is wrong with anything
# else, in words; a browser's own "match the requested format" says nothing of "not a digit".
READING_INPUT = {
    "class": "form-control",
    "inputmode": "numeric",
    "maxlength": MAX_DIGITS,
    "autocomplete": "off",
    "placeholder": "such as 583124",
}


class FeedbackForm(forms.Form):
    """An owner's "this is wrong": what it really reads, digits left to right, or that it is
    not a digit (nor a number) at all. Prefilled with their last suggestion only: the current
    reading is what they say is wrong. ``feedback_give`` judges the reading."""

    number = forms.CharField(label="It really reads", required=False, widget=forms.TextInput(attrs=READING_INPUT))
    not_a_digit = forms.BooleanField(
        label="It is not a digit or a number",
        required=False,
        widget=forms.CheckboxInput(attrs={"class": "form-check-input"}),
    )

    def __init__(self, *args, prediction: Prediction, feedback: Feedback | None = None, **kwargs):
        if feedback is not None:
            kwargs.setdefault("initial", {"number": feedback.suggested_number, "not_a_digit": feedback.not_a_digit})
        super().__init__(*args, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("not_a_digit") == bool(cleaned.get("number", "").strip()):
            raise forms.ValidationError(
                'Write what it really reads (digits only, left to right), or tick "It is not a digit or a number".'
            )
        return cleaned

    @property
    def suggested_number(self) -> str | None:
        """The suggestion as ``feedback_give`` takes it."""
        return None if self.cleaned_data["not_a_digit"] else self.cleaned_data["number"]


class StaffFlagForm(forms.Form):
    """Staff's correction on the image's page, as in the admin: what it really reads, or that
    it is not a digit; prefilled with the flag there is, never with the reading it corrects
    (the admin's flagging never has a default either). ``image_flag`` judges the reading."""

    number = forms.CharField(label="It really reads", required=False, widget=forms.TextInput(attrs=READING_INPUT))
    not_a_digit = forms.BooleanField(
        label="It is not a digit", required=False, widget=forms.CheckboxInput(attrs={"class": "form-check-input"})
    )
    note = forms.CharField(required=False, widget=forms.TextInput(attrs={"class": "form-control"}))

    def __init__(self, *args, image: DigitImage, **kwargs):
        flag = image.flag_or_none
        initial = {"number": flag.correct_number, "not_a_digit": flag.not_a_digit, "note": flag.note} if flag else {}
        super().__init__(*args, initial=initial, prefix="flag", **kwargs)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("not_a_digit") == bool(cleaned.get("number")):
            raise forms.ValidationError('Write what it really reads, or tick "It is not a digit" (not both).')
        return cleaned

    @property
    def correct_number(self) -> str | None:
        """The correction as ``image_flag`` takes it."""
        return None if self.cleaned_data["not_a_digit"] else self.cleaned_data["number"]


class RetrainForm(forms.Form):
    """`manage.py retrain`'s options, for the model versions page."""

    epochs = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=50,
        help_text=f"empty: {settings.RETRAIN_EPOCHS}, the setting RETRAIN_EPOCHS",
    )
    force = forms.BooleanField(
        required=False,
        label=RetrainRun.FORCE_LABEL,
        help_text="with no corrections yet, this also fine-tunes it on MNIST alone",
    )
