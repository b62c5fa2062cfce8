"""Built-in fusionkit plugins: tasks recognizer family."""
