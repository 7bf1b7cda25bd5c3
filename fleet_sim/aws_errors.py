"""AWS error responses in the wire formats botocore parses (EC2 XML, JSON protocol, query XML)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from xml.sax.saxutils import escape

PROTOCOL_EC2 = "ec2"
PROTOCOL_JSON = "json"
PROTOCOL_QUERY = "query"


@dataclass
class AwsError(Exception):
    code: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def render(self, protocol: str) -> tuple[int, dict[str, str], bytes]:
        """``(HTTP status, headers, body)`` of this error in ``protocol``'s format."""
        request_id = str(uuid.uuid4())
        if protocol == PROTOCOL_JSON:
            body = json.dumps({"__type": self.code, "message": self.message}).encode()
            headers = {
                "Content-Type": "application/x-amz-json-1.1",
                "x-amzn-RequestId": request_id,
                "x-amzn-ErrorType": self.code,
            }
            return self.status, headers, body
        if protocol == PROTOCOL_EC2:
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Response><Errors><Error><Code>{escape(self.code)}</Code>"
                f"<Message>{escape(self.message)}</Message></Error></Errors>"
                f"<RequestID>{request_id}</RequestID></Response>"
            ).encode()
            return self.status, {"Content-Type": "text/xml;charset=UTF-8"}, body
        kind = "Receiver" if self.status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(self.code)}</Code>"
            f"<Message>{escape(self.message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return self.status, {"Content-Type": "text/xml"}, body


def throttling_error(service: str, operation: str) -> AwsError:
    """What AWS answers a caller over its request rate (EC2: a 503): botocore retries both codes."""
    if service == "ec2":
        return AwsError("RequestLimitExceeded", "Request limit exceeded.", 503)
    return AwsError("ThrottlingException", f"Rate exceeded ({operation})", 400)


def capacity_error(code: str, instance_id: str, instance_type: str, zone: str) -> AwsError:
    # A server error on EC2's side: botocore's standard mode retries it like any 500.
    return AwsError(
        code,
        f"We currently do not have sufficient {instance_type} capacity in the Availability Zone you "
        f"requested ({zone}) to start instance {instance_id}. Our system will be working on "
        "provisioning additional capacity. You can currently get capacity by not specifying an "
        "Availability Zone in your request or choosing a different Availability Zone.",
        500,
    )
