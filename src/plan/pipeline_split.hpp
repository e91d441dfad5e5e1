#pragma once
// Cutting a model's layers into contiguous pipeline stages of balanced cost. Used by
// `nexplain plan`, and meant for collect's pipeline so that both choose the same split.
#include <vector>

namespace nexplain {

// cost[l] = the cost of layer l (seconds per micro-batch, say). Returns the first layer of each
// of the `stages` stages (result[0] = 0, increasing; stage s = [result[s], result[s+1])), such
// that the largest stage cost is as small as possible; every stage gets at least one layer.
// Among equally good splits the later stages are filled first, so stage 0 -- which also holds
// the embeddings -- gets the fewest layers. Error when stages < 1 or stages > cost.size().
std::vector<int> split_layers(const std::vector<double>& cost, int stages);

}  // namespace nexplain
