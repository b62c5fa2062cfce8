"""Built-in fusionkit plugins: tasks patient family."""
