// `nexplain build-info`: what this binary was built with (backends, libraries), for bug reports.
#include <cstdio>

#include <hdf5.h>
#include <mpi.h>

#include "cli/commands.hpp"
#include "nexplain_version.hpp"

namespace nexplain::cli {

void add_version_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("build-info", "Print the version and which backends and libraries this build has");
  cmd->callback([] {
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(mpi, &len);
    std::string mpi_line(mpi, static_cast<size_t>(len));
    if (auto nl = mpi_line.find('\n'); nl != std::string::npos) mpi_line.resize(nl);
    std::printf("nexplain %s\n", NEXPLAIN_VERSION);
#ifdef NEXPLAIN_HAVE_CUDA
    std::printf("cuda backend: yes\n");
#else
    std::printf("cuda backend: no\n");
#endif
    std::printf("hdf5: %u.%u.%u\nmpi: %s\n", maj, min, rel, mpi_line.c_str());
  });
}

}  // namespace nexplain::cli
