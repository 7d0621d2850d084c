/*
 * Process and socket helpers for worker processes (config `workers`): the control socket with
 * descriptors passed alongside, shared-memory segments, spawning and reaping workers.
 */
#define _GNU_SOURCE
#include "CPythonShims.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

long aiges_send_with_fd(int sock, const void *data, size_t len, int fd) {
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int))];
    } control;
    if (fd >= 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(header), &fd, sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

long aiges_recv_with_fds(int sock, void *data, size_t len, int *fds, int capacity, int *count) {
    struct iovec iov = {.iov_base = data, .iov_len = len};
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int) * 8)];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.bytes,
                         .msg_controllen = sizeof control.bytes};
    *count = 0;
    ssize_t result = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (result < 0) return -1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&msg); header != NULL; header = CMSG_NXTHDR(&msg, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
            if (*count < capacity) fds[(*count)++] = fd;
            else close(fd);
        }
    }
    return result;
}

int aiges_socket_pair(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

int aiges_spawn(const char *program, char *const argv[], int child_fd, int *pid) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attributes);
    /* fd 3 in the child is its end of the socket (dup2 clears close-on-exec); every other
       descriptor of ours is close-on-exec or inherited as the host left it. */
    posix_spawn_file_actions_adddup2(&actions, child_fd, 3);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGCHLD);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setsigdefault(&attributes, &defaults);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t child = 0;
    int error = posix_spawn(&child, program, &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    if (error != 0) {
        errno = error;
        return -1;
    }
    *pid = child;
    return 0;
}

int aiges_wait_child(int pid, int block, int *exit_code, int *signal_number) {
    int status = 0;
    *exit_code = -1;
    *signal_number = 0;
    for (;;) {
        pid_t result = waitpid(pid, &status, block ? 0 : WNOHANG);
        if (result == pid) break;
        if (result == 0) return 0;
        if (errno == EINTR) continue;
        return -1; /* ECHILD: reaped elsewhere (SIGCHLD ignored by the host) */
    }
    if (WIFEXITED(status)) *exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) *signal_number = WTERMSIG(status);
    return 1;
}

int aiges_die_with_parent(int expected_parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return -1;
    return getppid() == expected_parent ? 0 : -1; /* the parent died before prctl: exit now */
}

int aiges_memfd(const char *name, size_t size) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)size) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

void *aiges_map_shared(int fd, size_t size) {
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return base == MAP_FAILED ? NULL : base;
}

int aiges_child_exited(int pid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
    return info.si_pid == pid;
}

int aiges_close_on_exec(int fd) { return fcntl(fd, F_SETFD, FD_CLOEXEC); }

int aiges_event_new(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

void aiges_event_signal(int fd) {
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof one);
    (void)ignored;
}

int aiges_wait_readable(int first, int second, int timeout_ms) {
    struct pollfd fds[2] = {{.fd = first, .events = POLLIN}, {.fd = second, .events = POLLIN}};
    int result = poll(fds, 2, timeout_ms);
    if (result <= 0) return 0;
    if (fds[1].revents != 0) {
        uint64_t count;
        ssize_t ignored = read(second, &count, sizeof count);
        (void)ignored;
    }
    return (fds[0].revents != 0 ? 1 : 0) | (fds[1].revents != 0 ? 2 : 0);
}

int aiges_readable_within(int fd, long long spin_ns) {
    struct pollfd one = {.fd = fd, .events = POLLIN};
    long long deadline = aiges_monotonic_ns() + spin_ns;
    do {
        if (poll(&one, 1, 0) > 0) return 1;
    } while (aiges_monotonic_ns() < deadline);
    return 0;
}

long long aiges_memfd_sealed_size(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) return -1;
    struct stat info;
    if (fstat(fd, &info) != 0) return -1;
    return (long long)info.st_size;
}
