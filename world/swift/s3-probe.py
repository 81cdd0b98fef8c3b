#!/usr/bin/python3
"""Readiness probe for the Swift all-in-one, standard library only (the Swift packages bring Python;
curl or awscli may be missing on a fresh machine).

usage: s3-probe.py ENDPOINT ACCESS_KEY SECRET_KEY health|list-buckets|round-trip

health        GET /healthcheck answers "OK"
list-buckets  a SigV4-signed S3 ListBuckets succeeds (proves s3api + tempauth + account server)
round-trip    create a bucket, put, get and delete an object, delete the bucket (proves the
              object and container servers can store data, e.g. that the disk takes xattrs)
Exit status 0 when the check passes; otherwise a one-line reason on stderr.
"""
import datetime
import hashlib
import hmac
import http.client
import sys
import urllib.parse

REGION = "us-east-1"


def request(endpoint, access_key, secret_key, method, path, body=b"", sign=True):
    url = urllib.parse.urlsplit(endpoint)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"host": url.netloc, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
    if sign:
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [method, urllib.parse.quote(path), "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload_hash]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + secret_key).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def expect(result, statuses, what):
    status, body = result
    if status not in statuses:
        raise RuntimeError(f"{what}: HTTP {status} {body[:300]!r}")
    return body


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    endpoint, access_key, secret_key, check = sys.argv[1:]

    def s3(method, path, body=b""):
        return request(endpoint, access_key, secret_key, method, path, body)

    try:
        if check == "health":
            body = expect(request(endpoint, "", "", "GET", "/healthcheck", sign=False), {200}, "healthcheck")
            if body.strip() != b"OK":
                raise RuntimeError(f"healthcheck answered {body[:100]!r}")
        elif check == "list-buckets":
            body = expect(s3("GET", "/"), {200}, "ListBuckets")
            if b"ListAllMyBucketsResult" not in body:
                raise RuntimeError(f"ListBuckets answered {body[:300]!r}")
        elif check == "round-trip":
            bucket = "vdi-vault-probe"
            data = b"vdi-vault probe\n"
            expect(s3("PUT", f"/{bucket}"), {200, 409}, "CreateBucket")
            expect(s3("PUT", f"/{bucket}/probe", data), {200}, "PutObject")
            if expect(s3("GET", f"/{bucket}/probe"), {200}, "GetObject") != data:
                raise RuntimeError("GetObject returned other bytes than were put")
            expect(s3("DELETE", f"/{bucket}/probe"), {204}, "DeleteObject")
            expect(s3("DELETE", f"/{bucket}"), {204}, "DeleteBucket")
        else:
            sys.exit(__doc__)
    except (OSError, RuntimeError, http.client.HTTPException) as error:
        print(f"{check}: {error}", file=sys.stderr)
        sys.exit(1)


main()
