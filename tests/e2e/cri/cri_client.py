#!/usr/bin/python3
"""A minimal CRI v1 client for the containerd e2e test.

    cri_client.py --socket PATH --gen DIR SERVICE METHOD [REQUEST_JSON]

Calls runtime.v1.SERVICE/METHOD over gRPC on the unix socket PATH with the
request given as JSON (proto field names), and prints the response as one
JSON line (proto field names, default values included, enums by name,
64-bit integers as strings; bytes fields of the response decoded as UTF-8
text). DIR holds cri_min_pb2.py, generated from cri_min.proto by
`protoc --python_out=DIR`. On a gRPC error it prints the status code and
details to stderr and exits 2.
"""

import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--gen", required=True)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("service")
    ap.add_argument("method")
    ap.add_argument("request", nargs="?", default="{}")
    a = ap.parse_args()

    sys.path.insert(0, a.gen)
    import grpc
    from google.protobuf import json_format
    import cri_min_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name[a.service]
    method = service.methods_by_name[a.method]
    req_cls = getattr(pb, method.input_type.name)
    resp_cls = getattr(pb, method.output_type.name)
    req = json_format.Parse(a.request, req_cls())

    with grpc.insecure_channel("unix://" + a.socket) as ch:
        call = ch.unary_unary(
            f"/{service.full_name}/{method.name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        try:
            resp = call(req, timeout=a.timeout)
        except grpc.RpcError as e:
            print(f"{a.service}/{a.method}: {e.code().name}: {e.details()}", file=sys.stderr)
            sys.exit(2)

    out = json_format.MessageToDict(
        resp, preserving_proto_field_name=True, including_default_value_fields=True
    )
    for f in resp.DESCRIPTOR.fields:
        if f.type == f.TYPE_BYTES and f.label != f.LABEL_REPEATED:
            out[f.name] = getattr(resp, f.name).decode("utf-8", "replace")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
