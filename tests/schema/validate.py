#!/usr/bin/python3
# tests/schema/validate.py: checks pipeline files against schemas/pipeline.schema.json
# (JSON Schema 2020-12) for tests/schema/schema.sh. YAML is read with the scalar
# typing pipectl uses (YAML 1.2 core), not PyYAML's YAML 1.1 rules: that is the
# loader the schema assumes. --yaml11 reads the files with PyYAML's safe_load
# (YAML 1.1: on, off, yes, no are booleans, 1_000 and 0x1F numbers,
# 2024-01-01 a date) instead, as many editors do; the shipped pipelines must pass both.
#
#   validate.py --check-schema SCHEMA    the schema is a valid 2020-12 schema
#   validate.py --lint SCHEMA            every property and $def has a description
#   validate.py --keys SCHEMA            prints every property name, one a line
#   validate.py SCHEMA FILE...           one line per file, tab-separated:
#                                        valid|invalid|yaml-error FILE MESSAGE
#   validate.py --yaml11 SCHEMA FILE...  the same, read with yaml.safe_load
# Exit status: 0 when the checks ran (whatever the verdicts), 1 when a
# --check-schema or --lint check fails, 2 on a usage error.

import json
import re
import sys

import jsonschema
import yaml

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


class PipelineLoader(yaml.SafeLoader):
	"""SafeLoader with YAML 1.2 core scalar typing: only true/false, null/~/empty,
	-?[0-9]+ and -?[0-9]+.[0-9]*([eE][-+]?[0-9]+)? are typed; everything else
	(yes, on, 0x1f, 1_000, 2024-01-01, <<) stays a string. Mapping keys are
	always strings: the text of the scalar key. Like pipectl, it rejects
	aliases and explicit tags."""

	yaml_implicit_resolvers = {}
	yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)

	def compose_node(self, parent, index):
		# pipectl rejects aliases and explicit tags; so does this loader
		event = self.peek_event()
		if isinstance(event, yaml.AliasEvent):
			raise yaml.composer.ComposerError(
				None, None, "YAML aliases are not supported", event.start_mark)
		if getattr(event, "tag", None) is not None:
			raise yaml.composer.ComposerError(
				None, None, "YAML tags are not supported (%r)" % event.tag,
				event.start_mark)
		return super().compose_node(parent, index)

	def construct_mapping(self, node, deep=False):
		if not isinstance(node, yaml.MappingNode):
			raise yaml.constructor.ConstructorError(
				None, None, "expected a mapping node, but found %s" % node.id,
				node.start_mark)
		mapping = {}
		for key_node, value_node in node.value:
			if not isinstance(key_node, yaml.ScalarNode):
				raise yaml.constructor.ConstructorError(
					"while constructing a mapping", node.start_mark,
					"found a non-scalar key", key_node.start_mark)
			mapping[key_node.value] = self.construct_object(value_node, deep=deep)
		return mapping


def _construct_bool(loader, node):
	return loader.construct_scalar(node).lower() == "true"


def _construct_int(loader, node):
	return int(loader.construct_scalar(node), 10)


def _construct_float(loader, node):
	return float(loader.construct_scalar(node))


PipelineLoader.add_implicit_resolver(
	"tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
	list("tTfF"))
PipelineLoader.add_implicit_resolver(
	"tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
	["~", "n", "N", ""])
PipelineLoader.add_implicit_resolver(
	"tag:yaml.org,2002:int", re.compile(r"^-?[0-9]+$"), list("-0123456789"))
PipelineLoader.add_implicit_resolver(
	"tag:yaml.org,2002:float", re.compile(r"^-?[0-9]+\.[0-9]*(?:[eE][-+]?[0-9]+)?$"),
	list("-0123456789"))
PipelineLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
PipelineLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
PipelineLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
PipelineLoader.add_constructor("tag:yaml.org,2002:map", PipelineLoader.construct_yaml_map)


def load_schema(path):
	with open(path, encoding="utf-8") as f:
		return json.load(f)


def one_line(s):
	return " ".join(str(s).split())


def check_schema(schema):
	if schema.get("$schema") != DRAFT_2020_12:
		print("$schema is %r, not %r" % (schema.get("$schema"), DRAFT_2020_12))
		return 1
	try:
		jsonschema.Draft202012Validator.check_schema(schema)
	except jsonschema.exceptions.SchemaError as e:
		print("invalid schema: %s at %s" % (one_line(e.message), "/".join(map(str, e.path))))
		return 1
	return 0


def walk(node, where, visit):
	"""Calls visit(where, schema) for every subschema of node (dicts only)."""
	if isinstance(node, dict):
		visit(where, node)
		for k, v in node.items():
			if k in ("properties", "$defs"):
				for name, sub in v.items():
					walk(sub, where + "/" + k + "/" + name, visit)
			elif k in ("enum", "const", "examples", "default", "required"):
				continue
			else:
				walk(v, where + "/" + k, visit)
	elif isinstance(node, list):
		for i, v in enumerate(node):
			walk(v, where + "/" + str(i), visit)


def lint(schema):
	"""Every property and $def has a description; every object type that lists
	properties closes it with additionalProperties: false."""
	problems = []

	def visit(where, node):
		parts = where.split("/")
		if len(parts) >= 2 and parts[-2] in ("properties", "$defs") \
				and "description" not in node:
			problems.append("%s: no description" % where)
		types = node.get("type", [])
		if "object" in (types if isinstance(types, list) else [types]) \
				and "properties" in node and node.get("additionalProperties") is not False:
			problems.append("%s: additionalProperties is not false" % where)

	walk(schema, "#", visit)
	for p in problems:
		print(p)
	return 1 if problems else 0


def keys(schema):
	names = set()

	def visit(where, node):
		for name in node.get("properties", {}):
			names.add(name)

	walk(schema, "#", visit)
	for n in sorted(names):
		print(n)
	return 0


def error_path(e):
	return "/" + "/".join(str(p) for p in e.absolute_path)


def validate_files(schema, files, loader=PipelineLoader):
	validator = jsonschema.Draft202012Validator(schema)
	for path in files:
		try:
			with open(path, encoding="utf-8") as f:
				doc = yaml.load(f, Loader=loader)
		except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
			print("yaml-error\t%s\t%s" % (path, one_line(e)))
			continue
		errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
		if not errors:
			print("valid\t%s\t" % path)
			continue
		best = jsonschema.exceptions.best_match(errors)
		print("invalid\t%s\t%s: %s (%d error%s)" % (
			path, error_path(best), one_line(best.message),
			len(errors), "" if len(errors) == 1 else "s"))
	return 0


def main(argv):
	if len(argv) == 3 and argv[1] == "--check-schema":
		return check_schema(load_schema(argv[2]))
	if len(argv) == 3 and argv[1] == "--lint":
		return lint(load_schema(argv[2]))
	if len(argv) == 3 and argv[1] == "--keys":
		return keys(load_schema(argv[2]))
	if len(argv) >= 3 and argv[1] == "--yaml11":
		return validate_files(load_schema(argv[2]), argv[3:], yaml.SafeLoader)
	if len(argv) >= 2 and not argv[1].startswith("--"):
		return validate_files(load_schema(argv[1]), argv[2:])
	sys.stderr.write("usage: validate.py [--check-schema|--lint|--keys] SCHEMA"
	                 " | [--yaml11] SCHEMA FILE...\n")
	return 2


if __name__ == "__main__":
	sys.exit(main(sys.argv))
