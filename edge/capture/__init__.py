"""The first-party capture side: who the client is, its cookie, consent, and the beacon."""
