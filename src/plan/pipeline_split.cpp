#include "plan/pipeline_split.hpp"

#include <algorithm>
#include <limits>

#include "core/error.hpp"

namespace nexplain {

std::vector<int> split_layers(const std::vector<double>& cost, int stages) {
  const int L = static_cast<int>(cost.size());
  if (stages < 1 || stages > L)
    fail("pipeline split: {} stages for {} layers (each stage needs at least one layer)", stages, L);
  for (double c : cost)
    if (!(c >= 0)) fail("pipeline split: layer costs must be non-negative");
  std::vector<double> prefix(static_cast<std::size_t>(L) + 1, 0.0);
  for (int l = 0; l < L; ++l) prefix[l + 1] = prefix[l] + cost[static_cast<std::size_t>(l)];
  auto sum = [&](int a, int b) { return prefix[b] - prefix[a]; };  // layers [a, b)

  // best[s][l] = the smallest possible max stage cost for layers [0, l) in s stages (the
  // classic linear partition DP; L and stages are at most a few hundred).
  constexpr double kInf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(static_cast<std::size_t>(stages) + 1,
                                        std::vector<double>(static_cast<std::size_t>(L) + 1, kInf));
  best[0][0] = 0;
  for (int s = 1; s <= stages; ++s)
    for (int l = s; l <= L; ++l)
      for (int k = s - 1; k < l; ++k)
        best[s][l] = std::min(best[s][l], std::max(best[s - 1][k], sum(k, l)));
  const double bound = best[stages][L] * (1 + 1e-12);

  // Fill from the last stage backwards: each takes as many layers as it can (the smallest
  // `begin`) while its cost stays within the optimum and the layers before it can still be split
  // into the remaining stages within it. This is an optimal split in which stage 0 is lightest.
  std::vector<int> first(static_cast<std::size_t>(stages));
  int end = L;
  for (int s = stages - 1; s >= 0; --s) {
    int begin = s;  // stage s needs s layers before it, one per earlier stage
    while (begin < end - 1 && !(sum(begin, end) <= bound && best[s][begin] <= bound)) ++begin;
    first[static_cast<std::size_t>(s)] = begin;
    end = begin;
  }
  return first;
}

}  // namespace nexplain
