// Storage planning: what a shard of (stream, entity kind) stores per event and how long it keeps
// it, derived from the views that read the pair. Computed once when definitions load
// (definitions.h), read-only after.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tessera/result.h"

namespace tessera {

struct stream_def;
struct entity_def;
struct view_def;

// The plan of one (stream, entity kind): the union of the fields its views read, and the
// longest window plus as-of horizon.
struct kind_plan {
  std::string stream;
  std::string entity;
  std::vector<std::string> key_fields;
  std::vector<int> key_field_index;     // into stream_def::fields
  std::vector<int> stored_field_index;  // into stream_def::fields
  std::vector<std::string> stored_field_names;
  std::vector<const view_def*> views;  // point into the views given to plan_storage
  int64_t retention_us = 0;
};

// The plan's stored fields as decode_record's slot_of: stream field index -> slot among the
// stored fields, -1 for fields it does not store.
std::vector<int> stored_slot_of(const kind_plan& p);

// Appends a plan per (stream, entity kind) that some view reads, in the order views first name
// them, and completes each view's features: `slot` (the field's index among the plan's stored
// fields) and the compiled `filter` (over those slots).
// REQUIRES: every view names a stream in `streams` and an entity in `entities` (the readers
// checked); `views` is not resized afterwards (plans point into it).
// Errors: no stream at all, an entity key the view's stream lacks, a filter that does not compile.
status plan_storage(const std::vector<stream_def>& streams, const std::vector<entity_def>& entities,
                    std::vector<view_def>& views, std::vector<kind_plan>& plans);

}  // namespace tessera
