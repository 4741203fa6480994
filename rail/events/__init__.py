"""What Rail tells an app about its mail: event values, their types and payloads."""
