// node_local_rank: the rank of a process among those of its node, from which the CUDA backend
// picks its device (local rank % device count). The launcher variables in their documented
// order, bad values as Errors naming the variable, and MPI_Comm_split_type over a communicator
// (a singleton MPI world here) taking precedence over any variable.
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include "collect/node_local_rank.hpp"
#include "core/error.hpp"

using namespace nexplain;
using ::testing::HasSubstr;

namespace {

constexpr const char* kVariables[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};

// Clears the launcher variables for one test (a test run under srun or mpirun has them) and puts
// back what was there.
class LauncherEnvironment {
 public:
  LauncherEnvironment() {
    for (const char* name : kVariables) {
      const char* v = std::getenv(name);
      saved_.emplace_back(v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(name);
    }
  }
  ~LauncherEnvironment() {
    for (std::size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i])
        setenv(kVariables[i], saved_[i]->c_str(), 1);
      else
        unsetenv(kVariables[i]);
    }
  }
  void set(const char* name, const char* value) { setenv(name, value, 1); }

 private:
  std::vector<std::optional<std::string>> saved_;
};

}  // namespace

TEST(NodeLocalRank, NoLauncherMeansOneProcess) {
  LauncherEnvironment env;
  const NodeLocalRank r = node_local_rank();
  EXPECT_EQ(r.rank, 0);
  EXPECT_EQ(r.size, 0);
  EXPECT_THAT(r.source, HasSubstr("one process"));
  EXPECT_FALSE(r.node.empty());
}

TEST(NodeLocalRank, LauncherVariablesInOrder) {
  LauncherEnvironment env;
  env.set("SLURM_LOCALID", "2");
  EXPECT_EQ(node_local_rank().rank, 2);
  EXPECT_EQ(node_local_rank().source, "SLURM_LOCALID");
  // An mpirun inside a Slurm batch script: the MPI launcher's variable wins over the batch
  // step's SLURM_LOCALID.
  env.set("MPI_LOCALRANKID", "1");
  EXPECT_EQ(node_local_rank().rank, 1);
  EXPECT_EQ(node_local_rank().source, "MPI_LOCALRANKID");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "3");
  EXPECT_EQ(node_local_rank().rank, 3);
  EXPECT_EQ(node_local_rank().source, "OMPI_COMM_WORLD_LOCAL_RANK");
  // An empty variable counts as unset.
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "");
  EXPECT_EQ(node_local_rank().source, "MPI_LOCALRANKID");
}

TEST(NodeLocalRank, BadValuesNameTheVariable) {
  for (const char* bad : {"x", "-1", "1.5", "2 ", "99999999999"}) {
    LauncherEnvironment env;
    env.set("SLURM_LOCALID", "0");
    env.set("MPI_LOCALRANKID", bad);
    try {
      node_local_rank();
      ADD_FAILURE() << "expected an Error for MPI_LOCALRANKID='" << bad << "'";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string("MPI_LOCALRANKID='") + bad + "'"));
      EXPECT_THAT(e.what(), HasSubstr("non-negative integer"));
    }
  }
}

TEST(NodeLocalRank, MpiCommunicatorTakesPrecedence) {
  LauncherEnvironment env;
  int provided = 0;
  ASSERT_EQ(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), MPI_SUCCESS);
  // Set after MPI_Init: Open MPI would read its own variable at start-up as a launch by mpirun.
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "3");
  const NodeLocalRank r = node_local_rank(MPI_COMM_WORLD);
  EXPECT_EQ(r.rank, 0);  // a singleton world: one process on this node
  EXPECT_EQ(r.size, 1);
  EXPECT_EQ(r.source, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  // Without a communicator the variable is read, MPI or not.
  EXPECT_EQ(node_local_rank(MPI_COMM_NULL).rank, 3);
  MPI_Finalize();
  // After MPI_Finalize the communicator cannot be used: the variable again.
  EXPECT_EQ(node_local_rank(MPI_COMM_WORLD).rank, 3);
}
