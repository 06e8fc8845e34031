from django.urls import path

from classifier import views

app_name = "classifier"

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("history/", views.history, name="history"),
    path("images/<int:pk>/", views.image_detail, name="image_detail"),
    path("images/<int:pk>/card/", views.image_card, name="image_card"),
    path("images/<int:pk>/file/", views.image_file, name="image_file"),
    path("images/<int:pk>/model-input.png", views.image_model_input, name="image_model_input"),
]
