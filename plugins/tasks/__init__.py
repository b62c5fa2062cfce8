"""Built-in fusionkit plugins: tasks family."""
