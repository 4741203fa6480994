"""Rail against real peers on loopback: Python smtplib, swaks, curl."""
