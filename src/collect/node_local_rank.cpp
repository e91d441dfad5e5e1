#include "collect/node_local_rank.hpp"

#include <charconv>
#include <cstdlib>
#include <string_view>

#include <unistd.h>

#include "core/error.hpp"

namespace nexplain {

namespace {

// In order of precedence (node_local_rank.hpp says why).
constexpr const char* kLocalRankVariables[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};

int parse_local_rank(const char* name, std::string_view text) {
  int v = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0)
    fail("environment variable {}='{}': expected the node-local rank the launcher sets, a non-negative integer",
         name, text);
  return v;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown host";
  return buf;
}

NodeLocalRank local_rank_of(MPI_Comm comm) {
  int initialised = 0, finalised = 0;
  MPI_Initialized(&initialised);
  if (initialised) MPI_Finalized(&finalised);
  if (initialised && !finalised && comm != MPI_COMM_NULL) {
    MPI_Comm node = MPI_COMM_NULL;
    MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    NodeLocalRank r;
    r.source = "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)";
    MPI_Comm_rank(node, &r.rank);
    MPI_Comm_size(node, &r.size);
    MPI_Comm_free(&node);
    return r;
  }
  NodeLocalRank r;
  r.source = "no launcher variable (one process)";
  for (const char* name : kLocalRankVariables) {
    const char* v = std::getenv(name);
    if (v != nullptr && *v != '\0') {
      r.rank = parse_local_rank(name, v);
      r.source = name;
      break;
    }
  }
  return r;
}

}  // namespace

NodeLocalRank node_local_rank(MPI_Comm comm) {
  NodeLocalRank r = local_rank_of(comm);
  r.node = host_name();
  return r;
}

}  // namespace nexplain
