"""Entry points (``python main/<name>.py``) and, in ``main/flags``, the flags they parse."""
