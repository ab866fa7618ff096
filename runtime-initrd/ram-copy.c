/*
 * fnrun-ram-copy: fills a clone's own copy of its snapshot's RAM file, the one
 * a clone with shared folders maps shared with their daemons (src/vm/launch.ts).
 *
 *   fnrun-ram-copy SOURCE >COPY
 *
 * COPY (standard output) is a regular file already as large as SOURCE and all
 * hole. Only what SOURCE holds is written, at the same offsets: its holes (RAM
 * the saved guest never touched) are skipped (SEEK_DATA, SEEK_HOLE), and so are
 * its pages of zeros, which stay holes in the copy and read the same. Unlike
 * `cp`, it never truncates nor resizes its output, so QEMU can map the copy
 * while it is being filled: QEMU reads no guest RAM until its state is loaded,
 * which fnrun starts only once this has exited 0. Exits 1 with a message on
 * standard error if anything fails.
 *
 * Host-side helper, compiled by fnrun on first use (src/vm/mounts.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096
#define CHUNK (1 << 20)

static unsigned char buffer[CHUNK];
static const unsigned char zeros[PAGE];

static void fail(const char *what) {
  fprintf(stderr, "fnrun-ram-copy: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void write_at(const unsigned char *bytes, size_t size, off_t offset) {
  while (size > 0) {
    ssize_t n = pwrite(STDOUT_FILENO, bytes, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("writing the copy");
    bytes += n;
    size -= (size_t)n;
    offset += n;
  }
}

/* Writes the runs of pages in `bytes` (read from `offset`) that are not all zero. */
static void write_nonzero(const unsigned char *bytes, size_t size, off_t offset) {
  size_t run = 0, start = 0;
  for (size_t at = 0; at < size; at += PAGE) {
    size_t length = size - at < PAGE ? size - at : PAGE;
    if (memcmp(bytes + at, zeros, length) != 0) {
      if (run == 0) start = at;
      run += length;
      continue;
    }
    if (run > 0) write_at(bytes + start, run, offset + (off_t)start);
    run = 0;
  }
  if (run > 0) write_at(bytes + start, run, offset + (off_t)start);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fnrun-ram-copy SOURCE >COPY\n");
    return 2;
  }
  int source = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (source < 0) fail(argv[1]);
  struct stat from, to;
  if (fstat(source, &from) != 0 || fstat(STDOUT_FILENO, &to) != 0) fail("fstat");
  if (!S_ISREG(to.st_mode) || to.st_size != from.st_size) {
    errno = EINVAL;
    fail("the copy (standard output) must be a regular file as large as the source");
  }
  for (off_t data = 0; data < from.st_size;) {
    data = lseek(source, data, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break; /* no data after this: the rest is a hole */
      fail("SEEK_DATA");
    }
    off_t hole = lseek(source, data, SEEK_HOLE);
    if (hole < 0) fail("SEEK_HOLE");
    while (data < hole) {
      size_t want = hole - data < CHUNK ? (size_t)(hole - data) : CHUNK;
      ssize_t got = pread(source, buffer, want, data);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("reading the source");
      if (got == 0) {
        errno = EIO;
        fail("the source is shorter than it was");
      }
      write_nonzero(buffer, (size_t)got, data);
      data += got;
    }
  }
  return 0;
}
