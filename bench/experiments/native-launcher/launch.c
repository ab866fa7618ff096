/* Measurement prototype: spawn a noted clone's QEMU, then exec Node.
 * usage: launch ARGVFILE STATEFILE NODE SCRIPT ARGS...
 * ARGVFILE: NUL-separated argv of QEMU (path first). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) goto node;
  static char buf[65536];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) goto node;
  char *qargv[256];
  int qc = 0;
  for (char *p = buf; p < buf + n && qc < 255; p += strlen(p) + 1) qargv[qc++] = p;
  qargv[qc] = NULL;
  int state = open(argv[2], O_RDONLY);
  if (state < 0) goto node;
  int pairs[4][2];
  for (int i = 0; i < 4; i++)
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]) < 0) goto node;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int devnull = open("/dev/null", O_RDONLY);
    /* move everything above 5 first, then place */
    int moved[6];
    int src[6] = {devnull, pairs[0][1], pairs[1][1], state, pairs[2][1], pairs[3][1]};
    for (int i = 0; i < 6; i++) moved[i] = fcntl(src[i], F_DUPFD, 20);
    for (int i = 0; i < 6; i++) dup2(moved[i], i); /* dup2 clears CLOEXEC */
    execv(qargv[0], qargv);
    _exit(127);
  }
  close(state);
  for (int i = 0; i < 4; i++) close(pairs[i][1]);
  char env[128];
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = fcntl(pairs[i][0], F_DUPFD, 10 + i); /* no CLOEXEC */
    close(pairs[i][0]);
  }
  snprintf(env, sizeof env, "%d,%d,%d,%d,%d", pid, fds[0], fds[1], fds[2], fds[3]);
  setenv("FNRUN_LAUNCHED", env, 1);
node:
  unsetenv("NODE_EXTRA_CA_CERTS");
  execv(argv[3], argv + 3);
  return 127;
}
