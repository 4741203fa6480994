"""Pure message handling: headers, composition from the API, canonical bytes."""
