#pragma once
// Combining records files of disjoint layer sets into one, for collect runs split by layer (a
// Slurm job array over layer ranges). Every layer's reduction depends only on the corpus, the
// model, the parameters and that layer, so the combination is the records file one collect over
// all those layers writes: the same datasets, byte for byte (tests/slurm check it).
#include <filesystem>
#include <string>
#include <vector>

namespace nexplain {

// Reads every part, checks they come from the same collect (parameters, corpus, model,
// excerpt count, pre-pass, backend: Error naming the part and the field) and hold disjoint
// layers, and writes `out` atomically with the union of their layers. With `expected_layers`
// non-empty, the union must be exactly those layers (Error listing the missing ones).
void merge_records(const std::vector<std::filesystem::path>& parts, const std::filesystem::path& out,
                   const std::string& command_line, const std::vector<int>& expected_layers = {});

}  // namespace nexplain
