/* The second-order (Heun) step of the flow sampler and the velocity it uses
 * (src/infer/sampler.h), against the Euler step and hand-computed values. */
#include "test.h"
#include "infer/sampler.h"

TEST(velocity_is_the_euler_direction) {
    float z[3] = {0.5f, -1.0f, 2.0f}, x[3] = {1.0f, 1.0f, 1.0f}, v[3], e[3];
    tuna_flow_velocity(v, z, x, 3, 0.25f, 0.05f);
    for (int i = 0; i < 3; i++) CHECK(fabsf(v[i] - (x[i] - z[i]) / 0.75f) < 1e-6f, "v[%d] = %g", i, v[i]);
    memcpy(e, z, sizeof e);
    tuna_euler_step(e, x, 3, 0.25f, 0.5f, 0.05f);
    for (int i = 0; i < 3; i++) CHECK(fabsf(e[i] - (z[i] + 0.25f * v[i])) < 1e-6f, "euler = z + dt v");
    tuna_flow_velocity(v, z, x, 3, 0.99f, 0.05f);
    CHECK(fabsf(v[0] - (x[0] - z[0]) / 0.05f) < 1e-4f, "t_eps floors 1 - t");
}

TEST(heun_averages_both_ends) {
    float z[2] = {1.0f, 2.0f}, v1[2] = {1.0f, -2.0f}, v2[2] = {3.0f, 0.0f};
    tuna_heun_step(z, v1, v2, 2, 0.2f, 0.6f);
    CHECK(fabsf(z[0] - (1.0f + 0.4f * 2.0f)) < 1e-6f && fabsf(z[1] - (2.0f + 0.4f * -1.0f)) < 1e-6f,
          "z += dt (v1 + v2) / 2: %g %g", z[0], z[1]);
    float a[2] = {1.0f, 2.0f}, b[2] = {1.0f, 2.0f}, x[2] = {0.0f, 4.0f}, v[2];
    tuna_flow_velocity(v, a, x, 2, 0.5f, 0.05f);
    tuna_heun_step(a, v, v, 2, 0.5f, 0.75f);
    tuna_euler_step(b, x, 2, 0.5f, 0.75f, 0.05f);
    CHECK(fabsf(a[0] - b[0]) < 1e-6f && fabsf(a[1] - b[1]) < 1e-6f, "equal velocities: Heun is Euler");
}

int main(void) {
    RUN(velocity_is_the_euler_direction);
    RUN(heun_averages_both_ends);
    return test_summary();
}
