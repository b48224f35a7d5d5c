// Conversions between schemas/inference.capnp and the family's types (messages.h), for the RPC
// capability and the node-to-node forwarding of predict calls. Pure functions.
#pragma once
#include "messages.h"
#include "schemas/inference.capnp.h"

namespace tessera {

example_in read_example(wire::Example::Reader r);
void write_example(wire::Example::Builder b, const example_in& e);
predict_options read_options(wire::PredictOptions::Reader r);
void write_options(wire::PredictOptions::Builder b, const predict_options& o);
prediction_out read_prediction(wire::Prediction::Reader r);
void write_prediction(wire::Prediction::Builder b, const prediction_out& p);

}  // namespace tessera
