"""Pages: parse input, call one service or selector, present the result. A module per
sub-domain: ``site`` (health check, error pages, favicon), ``accounts`` (sign-up, passwords,
API token, the account and its data), ``images`` (the gallery, uploads and an image's pages and
pictures), ``drawing`` (the draw page and its live answer) and ``history`` (the history, its CSV
and the staff's stats); ``_common`` holds what more than one of them shows. The URLconfs and
settings name the views by their module."""
