from django.urls import path

from classifier.views import accounts, drawing, history, images

app_name = "classifier"

urlpatterns = [
    path("", images.home, name="home"),
    path("signup/", accounts.signup, name="signup"),
    path("draw/", drawing.draw, name="draw"),
    path("draw/preview/", drawing.draw_preview, name="draw_preview"),
    path("draw/preview/<uuid:pk>/", drawing.draw_preview_result, name="draw_preview_result"),
    path("upload/inline/", images.upload_inline, name="upload_inline"),
    path("history/", history.history, name="history"),
    path("history/export.csv", history.history_export, name="history_export"),
    path("stats/", history.stats, name="stats"),
    path("account/", accounts.account, name="account"),
    path("account/api-token/", accounts.api_token, name="api_token"),
    path("account/data.zip", accounts.account_data, name="account_data"),
    path("account/delete/", accounts.account_delete_view, name="account_delete"),
    path("images/<int:pk>/", images.image_detail, name="image_detail"),
    path("images/<int:pk>/card/", images.image_card, name="image_card"),
    path("images/<int:pk>/result/", images.image_detail_result, name="image_detail_result"),
    path("images/<int:pk>/retry/", images.image_retry_view, name="image_retry"),
    path("images/<int:pk>/read-as/", images.image_read_as_view, name="image_read_as"),
    path("images/<int:pk>/delete/", images.image_delete_view, name="image_delete"),
    path("images/<int:pk>/file/", images.image_file, name="image_file"),
    path("images/<int:pk>/model-input.png", images.image_model_input, name="image_model_input"),
    path("images/<int:pk>/digits/<int:index>/input.png", images.image_digit_input, name="image_digit_input"),
    path("images/<int:pk>/grad-cam.png", images.image_grad_cam, name="image_grad_cam"),
    path("images/<int:pk>/feedback/", images.image_feedback, name="image_feedback"),
    path("images/<int:pk>/flag/", images.image_flag_view, name="image_flag"),
]
