#!/usr/bin/python3
"""A signature-checking front for an S3-compatible test server.

Listens on 127.0.0.1 (an ephemeral port, written to --port-file), recomputes
each request's AWS SigV4 signature with botocore's reference signer and
answers 403 SignatureDoesNotMatch / InvalidAccessKeyId on a mismatch; checks
x-amz-content-sha256 against the body; forwards the rest to --upstream.

It also answers ListParts (which the test server lacks) from the server's
data folder, logs every request (--log), and can stall one part upload to
let a test kill the uploader mid-way (--ctl file holding a part number).
With --get-ctl FILE holding "cut N" or "stall N", the next GET of a backup
object (a key ending in .aibk) answered with 2xx sends only the first N
bytes of its body: "cut" then closes the connection, "stall" waits 20 s
first (for a test to kill the reader); FILE.done then holds what was done."""
import argparse
import hashlib
import hmac
import http.client
import http.server
import os
import sys
import threading
import time
import urllib.parse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARGS = None
LOG_LOCK = threading.Lock()
HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "te", "upgrade",
       "proxy-connection"}


def xml_error(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            '<Message>%s</Message></Error>' % (code, message)).encode()


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def log_req(self, status):
        if ARGS.log:
            with LOG_LOCK, open(ARGS.log, "a") as f:
                rng = self.headers.get("Range")
                f.write("%s %s %d%s\n" % (self.command, self.path, status,
                                           " range=" + rng if rng else ""))

    def answer(self, status, body, ctype="application/xml"):
        self.log_req(status)  # before answering: the log is complete when the client reads it
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def check_signature(self, body):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return 403, "AccessDenied", "no SigV4 authorization"
        fields = {}
        for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
        cred = fields.get("Credential", "").split("/")
        if len(cred) != 5 or cred[0] != ARGS.access_key:
            return 403, "InvalidAccessKeyId", "unknown access key"
        if cred[2] != ARGS.region or cred[3] != "s3" or cred[4] != "aws4_request":
            return 403, "SignatureDoesNotMatch", "wrong credential scope"
        stamp = self.headers.get("x-amz-date", "")
        if cred[1] != stamp[:8]:
            return 403, "SignatureDoesNotMatch", "scope date differs from x-amz-date"
        claimed = self.headers.get("x-amz-content-sha256")
        if claimed is None:
            return 400, "InvalidRequest", "missing x-amz-content-sha256"
        if claimed != "UNSIGNED-PAYLOAD" and claimed != hashlib.sha256(body).hexdigest():
            return 400, "XAmzContentSHA256Mismatch", "body digest differs"
        signed = fields.get("SignedHeaders", "").split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            return 403, "SignatureDoesNotMatch", "host and x-amz-date must be signed"
        headers = {}
        for name in signed:
            value = self.headers.get(name)
            if value is None:
                return 403, "SignatureDoesNotMatch", "signed header %s missing" % name
            headers[name] = value
        req = AWSRequest(method=self.command, url="http://%s%s" % (headers["host"], self.path),
                         headers=headers, data=body)
        req.context["timestamp"] = stamp
        signer = S3SigV4Auth(Credentials(ARGS.access_key, ARGS.secret_key), "s3", ARGS.region)
        canonical = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, canonical), req)
        if not hmac.compare_digest(want, fields.get("Signature", "")):
            sys.stderr.write("signature mismatch; canonical request:\n%s\n" % canonical)
            sys.stderr.flush()
            return 403, "SignatureDoesNotMatch", "the signature does not match"
        return None

    def list_parts(self, bucket, upload_id):
        d = os.path.join(ARGS.data_dir, bucket, "._S3rver_uploads", os.path.basename(upload_id))
        if not os.path.isdir(d):
            return self.answer(404, xml_error("NoSuchUpload", "no such upload"))
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListPartsResult>',
               "<UploadId>%s</UploadId>" % upload_id]
        for name in sorted((n for n in os.listdir(d) if n.isdigit()), key=int):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            out.append("<Part><PartNumber>%s</PartNumber><ETag>&quot;%s&quot;</ETag>"
                       "<Size>%d</Size></Part>" % (name, hashlib.md5(data).hexdigest(), len(data)))
        out.append("<IsTruncated>false</IsTruncated></ListPartsResult>")
        return self.answer(200, "".join(out).encode())

    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        bad = self.check_signature(body)
        if bad:
            sys.stderr.write("refused %s %s: %s\n" % (self.command, self.path, bad[2]))
            sys.stderr.flush()
            return self.answer(bad[0], xml_error(bad[1], bad[2]))
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        segs = url.path.lstrip("/").split("/", 1)
        if self.command == "GET" and "uploadId" in query and len(segs) == 2 and ARGS.data_dir:
            return self.list_parts(segs[0], query["uploadId"][0])
        if self.command == "PUT" and "partNumber" in query and ARGS.ctl:
            try:
                with open(ARGS.ctl) as f:
                    stall = f.read().strip()
            except OSError:
                stall = ""
            if stall and stall == query["partNumber"][0]:
                os.unlink(ARGS.ctl)
                with open(ARGS.ctl + ".stalled", "w") as f:
                    f.write(stall)
                time.sleep(20)
                return self.answer(503, xml_error("SlowDown", "stalled by the test"))
        conn = http.client.HTTPConnection(ARGS.upstream_host, ARGS.upstream_port, timeout=60)
        fwd = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        fwd["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=fwd)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.log_req(resp.status)
        cut = None
        if (self.command == "GET" and ARGS.get_ctl and url.path.endswith(".aibk")
                and 200 <= resp.status < 300):
            try:
                with open(ARGS.get_ctl) as f:
                    what, n = f.read().split()
                cut = (what, int(n))
            except (OSError, ValueError):
                cut = None
            if cut and cut[1] < len(data):
                os.unlink(ARGS.get_ctl)
                with open(ARGS.get_ctl + ".done", "w") as f:
                    f.write("%s %d %s\n" % (cut[0], cut[1], url.path))
            else:
                cut = None
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        clen = resp.getheader("Content-Length")
        self.send_header("Content-Length", clen if self.command == "HEAD" and clen else
                         str(len(data)))
        self.end_headers()
        if cut:
            self.wfile.write(data[:cut[1]])
            self.wfile.flush()
            if cut[0] == "stall":
                time.sleep(20)
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", required=True)  # 127.0.0.1:PORT
    p.add_argument("--port-file", required=True)
    p.add_argument("--access-key", default="S3RVER")
    p.add_argument("--secret-key", default="S3RVER")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--data-dir")
    p.add_argument("--log")
    p.add_argument("--ctl")
    p.add_argument("--get-ctl")
    ARGS = p.parse_args()
    host, _, port = ARGS.upstream.rpartition(":")
    ARGS.upstream_host, ARGS.upstream_port = host, int(port)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Front)
    srv.daemon_threads = True
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
