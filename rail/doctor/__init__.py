"""``rail doctor``: what the world sees of Rail (DNS, certificate, ports) against what
Rail would publish."""
