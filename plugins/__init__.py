"""Built-in fusionkit plugins (import name ``fusionkit_plugins``).

Each module is an ordinary plugin registered through the same hooks as a
third-party package; block one with ``FUSIONKIT_PLUGINS_BLOCK=builtin.<module>``.
"""
