"""Sending mail: the SMTP side of the domain's ``Mailer`` port."""
