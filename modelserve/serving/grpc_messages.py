"""The protobuf messages of the KServe v2 gRPC service, built at import time from a table.

The table below is the part of Triton's ``grpc_service.proto`` (package ``inference``) that
``serving.grpc`` uses, with the same message names and field numbers, so Triton's clients
(``tritonclient.grpc``) talk to it unchanged. No ``protoc``, no generated ``_pb2`` module: a
``FileDescriptorProto`` is filled from the table and its classes made with ``message_factory``, in
a private descriptor pool (so it never clashes with another ``inference`` package in the process,
e.g. tritonclient's own).

A field is ``(label, type, name, number)``: label ``""`` (singular), ``"repeated"``, ``"map"``
(``map<string, type>``) or ``"oneof <name>"``; type a scalar (``string``, ``bool``, ``int64``, ...)
or a message of this table (``Outer.Inner`` for a nested one).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["PACKAGE", "SERVICE", "MESSAGES", "message"]

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"

_Field = tuple[str, str, str, int]
_PARAMETER = [("oneof parameter_choice", "bool", "bool_param", 1), ("oneof parameter_choice", "int64", "int64_param", 2),
              ("oneof parameter_choice", "string", "string_param", 3),
              ("oneof parameter_choice", "double", "double_param", 4),
              ("oneof parameter_choice", "uint64", "uint64_param", 5)]
_TENSOR_METADATA = [("", "string", "name", 1), ("", "string", "datatype", 2), ("repeated", "int64", "shape", 3)]

#: message name -> fields (nested messages as ``Outer.Inner``, listed after their parent).
MESSAGES: dict[str, list[_Field]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [("", "bool", "live", 1)],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [("", "bool", "ready", 1)],
    "ModelReadyRequest": [("", "string", "name", 1), ("", "string", "version", 2)],
    "ModelReadyResponse": [("", "bool", "ready", 1)],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("", "string", "name", 1), ("", "string", "version", 2),
                               ("repeated", "string", "extensions", 3)],
    "ModelMetadataRequest": [("", "string", "name", 1), ("", "string", "version", 2)],
    "ModelMetadataResponse": [("", "string", "name", 1), ("repeated", "string", "versions", 2),
                              ("", "string", "platform", 3),
                              ("repeated", "ModelMetadataResponse.TensorMetadata", "inputs", 4),
                              ("repeated", "ModelMetadataResponse.TensorMetadata", "outputs", 5)],
    "ModelMetadataResponse.TensorMetadata": _TENSOR_METADATA,
    "InferParameter": _PARAMETER,
    "InferTensorContents": [("repeated", "bool", "bool_contents", 1), ("repeated", "int32", "int_contents", 2),
                            ("repeated", "int64", "int64_contents", 3), ("repeated", "uint32", "uint_contents", 4),
                            ("repeated", "uint64", "uint64_contents", 5), ("repeated", "float", "fp32_contents", 6),
                            ("repeated", "double", "fp64_contents", 7), ("repeated", "bytes", "bytes_contents", 8)],
    "ModelInferRequest": [("", "string", "model_name", 1), ("", "string", "model_version", 2), ("", "string", "id", 3),
                          ("map", "InferParameter", "parameters", 4),
                          ("repeated", "ModelInferRequest.InferInputTensor", "inputs", 5),
                          ("repeated", "ModelInferRequest.InferRequestedOutputTensor", "outputs", 6),
                          ("repeated", "bytes", "raw_input_contents", 7)],
    "ModelInferRequest.InferInputTensor": [*_TENSOR_METADATA, ("map", "InferParameter", "parameters", 4),
                                           ("", "InferTensorContents", "contents", 5)],
    "ModelInferRequest.InferRequestedOutputTensor": [("", "string", "name", 1),
                                                     ("map", "InferParameter", "parameters", 2)],
    "ModelInferResponse": [("", "string", "model_name", 1), ("", "string", "model_version", 2), ("", "string", "id", 3),
                           ("map", "InferParameter", "parameters", 4),
                           ("repeated", "ModelInferResponse.InferOutputTensor", "outputs", 5),
                           ("repeated", "bytes", "raw_output_contents", 6)],
    "ModelInferResponse.InferOutputTensor": [*_TENSOR_METADATA, ("map", "InferParameter", "parameters", 4),
                                             ("", "InferTensorContents", "contents", 5)],
    "ModelStreamInferResponse": [("", "string", "error_message", 1), ("", "ModelInferResponse", "infer_response", 2)],
    "ModelRepositoryParameter": [*_PARAMETER[:3], ("oneof parameter_choice", "bytes", "bytes_param", 4)],
    "RepositoryIndexRequest": [("", "string", "repository_name", 1), ("", "bool", "ready", 2)],
    "RepositoryIndexResponse": [("repeated", "RepositoryIndexResponse.ModelIndex", "models", 1)],
    "RepositoryIndexResponse.ModelIndex": [("", "string", "name", 1), ("", "string", "version", 2),
                                           ("", "string", "state", 3), ("", "string", "reason", 4)],
    "RepositoryModelLoadRequest": [("", "string", "repository_name", 1), ("", "string", "model_name", 2),
                                   ("map", "ModelRepositoryParameter", "parameters", 3)],
    "RepositoryModelLoadResponse": [],
    "RepositoryModelUnloadRequest": [("", "string", "repository_name", 1), ("", "string", "model_name", 2),
                                     ("map", "ModelRepositoryParameter", "parameters", 3)],
    "RepositoryModelUnloadResponse": [],
}

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64,
            "int32": _F.TYPE_INT32, "uint32": _F.TYPE_UINT32, "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING,
            "bytes": _F.TYPE_BYTES}


def _set_type(field: Any, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        if type_name not in MESSAGES:
            raise KeyError(f"grpc_messages: unknown message type {type_name!r}")
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_name}"


def _fill(message: Any, full_name: str, fields: list[_Field]) -> None:
    oneofs: dict[str, int] = {}
    for label, type_name, name, number in fields:
        field = message.field.add(name=name, number=number, label=_F.LABEL_OPTIONAL)
        if label == "map":
            entry = message.nested_type.add(name="".join(p.capitalize() for p in name.split("_")) + "Entry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, label=_F.LABEL_OPTIONAL, type=_F.TYPE_STRING)
            _set_type(entry.field.add(name="value", number=2, label=_F.LABEL_OPTIONAL), type_name)
            field.label = _F.LABEL_REPEATED
            field.type = _F.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.{full_name}.{entry.name}"
            continue
        _set_type(field, type_name)
        if label == "repeated":
            field.label = _F.LABEL_REPEATED
        elif label.startswith("oneof "):
            oneof = label.split()[1]
            if oneof not in oneofs:
                oneofs[oneof] = len(message.oneof_decl)
                message.oneof_decl.add(name=oneof)
            field.oneof_index = oneofs[oneof]
        elif label:
            raise ValueError(f"grpc_messages: unknown label {label!r} of {full_name}.{name}")


def _build() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(name="modelserve/kserve_v2_grpc.proto", package=PACKAGE, syntax="proto3")
    built: dict[str, Any] = {}
    for full_name, fields in MESSAGES.items():
        outer, _, inner = full_name.partition(".")
        message = built[outer].nested_type.add(name=inner) if inner else proto.message_type.add(name=outer)
        built[full_name] = message
        _fill(message, full_name, fields)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}


_CLASSES = _build()


def message(name: str) -> Any:
    """The message class ``name`` (e.g. ``"ModelInferRequest"``, ``"RepositoryIndexResponse.ModelIndex"``)."""
    return _CLASSES[name]
