from django.urls import path

from classifier import views

app_name = "classifier"

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("draw/", views.draw, name="draw"),
    path("draw/preview/", views.draw_preview, name="draw_preview"),
    path("draw/preview/<uuid:pk>/", views.draw_preview_result, name="draw_preview_result"),
    path("upload/inline/", views.upload_inline, name="upload_inline"),
    path("history/", views.history, name="history"),
    path("history/export.csv", views.history_export, name="history_export"),
    path("stats/", views.stats, name="stats"),
    path("account/", views.account, name="account"),
    path("account/api-token/", views.api_token, name="api_token"),
    path("account/data.zip", views.account_data, name="account_data"),
    path("account/delete/", views.account_delete_view, name="account_delete"),
    path("images/<int:pk>/", views.image_detail, name="image_detail"),
    path("images/<int:pk>/card/", views.image_card, name="image_card"),
    path("images/<int:pk>/result/", views.image_detail_result, name="image_detail_result"),
    path("images/<int:pk>/retry/", views.image_retry_view, name="image_retry"),
    path("images/<int:pk>/delete/", views.image_delete_view, name="image_delete"),
    path("images/<int:pk>/file/", views.image_file, name="image_file"),
    path("images/<int:pk>/model-input.png", views.image_model_input, name="image_model_input"),
    path("images/<int:pk>/digits/<int:index>/input.png", views.image_digit_input, name="image_digit_input"),
    path("images/<int:pk>/grad-cam.png", views.image_grad_cam, name="image_grad_cam"),
    path("images/<int:pk>/feedback/", views.image_feedback, name="image_feedback"),
    path("images/<int:pk>/flag/", views.image_flag_view, name="image_flag"),
]
