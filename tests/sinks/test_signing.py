"""Standard Webhooks signatures."""

import base64

from common.config_types import secret_key
from sinks.signing import Signer, signature, verify

# The example from the Standard Webhooks specification's reference libraries.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_reference_vector():
    assert signature(secret_key(SECRET), MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_signer_headers_sign_with_the_given_time_and_verify():
    headers = Signer(SECRET).headers(MSG_ID, BODY, now=TIMESTAMP + 0.9)
    assert headers == {"webhook-timestamp": str(TIMESTAMP), "webhook-signature": EXPECTED}
    key = secret_key(SECRET)
    assert verify(key, MSG_ID, str(TIMESTAMP), BODY, "v1,bogus " + EXPECTED)
    assert not verify(key, MSG_ID, str(TIMESTAMP + 1), BODY, EXPECTED)
    assert not verify(key, MSG_ID, str(TIMESTAMP), BODY + b" ", EXPECTED)
    assert not verify(key, "other", str(TIMESTAMP), BODY, EXPECTED)
    assert not verify(key, MSG_ID, "soon", BODY, EXPECTED)


def test_signer_never_shows_its_key():
    s = Signer("whsec_" + base64.b64encode(b"very-secret-key-bytes").decode())
    assert "very" not in repr(s) and "whsec" not in repr(s)
