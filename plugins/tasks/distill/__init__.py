"""Built-in fusionkit plugins: tasks distill family."""
