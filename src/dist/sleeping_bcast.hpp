#pragma once
// A broadcast for ranks that may wait a long time for it (a sweep's explain-only ranks wait for
// the whole collect). Open MPI's blocking calls poll the progress engine without pause, so a
// rank blocked in MPI_Bcast keeps a core busy that the collect ranks on its node could use;
// this one tests a non-blocking broadcast and sleeps between tests.
#include <chrono>

#include <mpi.h>

namespace nexplain {

// Collective over `comm`: every rank ends with root's `value`. A rank that is not root sleeps
// `poll` between tests, so it learns the value up to about one `poll` (per tree level) late.
void sleeping_bcast(int& value, int root, MPI_Comm comm,
                    std::chrono::milliseconds poll = std::chrono::milliseconds(50));

}  // namespace nexplain
