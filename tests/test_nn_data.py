"""Tests of hssalg_nn.data: every generator against an independent check.

The reference operators here are assembled independently of the package: by
explicit loops over grid points or by Kronecker sums built in this file, and
never by the fast solvers (sine transform, cached LU) under test. Analytic
checks use discrete eigenvectors (exact to rounding) or manufactured
solutions (second-order convergence).
"""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given
from hypothesis import strategies as st

from hssalg_nn.data import (LSHAPE_FIRST_EIGENVALUE, PDES, Dataset, diffusion_coefficient, grf,
                            lshape_mask, make_dataset)
from hssalg_nn.data.nonlinear import arakawa_jacobian

LINEAR = ("poisson", "poisson_mixed", "poisson_lshape", "diffusion", "helmholtz", "heat")
NONLINEAR = ("reaction_diffusion", "vorticity")
DIMS = {"poisson": (1, 2, 3), "poisson_mixed": (1, 2, 3), "poisson_lshape": (2,),
        "diffusion": (1, 2, 3), "helmholtz": (1, 2, 3), "heat": (1, 2, 3),
        "reaction_diffusion": (1, 2, 3), "vorticity": (2,)}
# residuals of exact solves: a few hundred eps times the condition number of the
# small test grids (<= ~1e3); 1e-10 is the contract of the issue
RES_TOL = 1e-10


def rel(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b)


# ---- independent reference operators -------------------------------------------------

def ref_second_difference(g, h):
    """tridiag(-1, 2, -1) / h^2, built entry by entry."""
    T = sp.lil_matrix((g, g))
    for i in range(g):
        T[i, i] = 2.0 / h**2
        if i > 0:
            T[i, i - 1] = -1.0 / h**2
        if i < g - 1:
            T[i, i + 1] = -1.0 / h**2
    return T.tocsr()


def ref_kron_sum(T, dim):
    g = T.shape[0]
    I = sp.identity(g)
    A = sp.csr_matrix((g**dim, g**dim))
    for a in range(dim):
        factors = [I] * dim
        factors[a] = T
        term = factors[0]
        for f in factors[1:]:
            term = sp.kron(term, f)
        A = A + term
    return A.tocsr()


def ref_laplacian(dim, g):
    """-Delta_h with zero Dirichlet values on the interior grid, h = 1/(g+1)."""
    return ref_kron_sum(ref_second_difference(g, 1.0 / (g + 1)), dim)


def grid_coords(dim, g, h):
    """C-order coordinates of the points (j+1) h, assembled by itertools."""
    return np.array([[(j + 1) * h for j in idx]
                     for idx in itertools.product(range(g), repeat=dim)])


# ---- the Gaussian random fields ----------------------------------------------------------

def test_grf_shape_and_determinism():
    a = grf(2, 8, 5, seed=3)
    assert a.shape == (5, 64) and a.dtype == np.float64
    np.testing.assert_array_equal(a, grf(2, 8, 5, seed=3))
    assert rel(grf(2, 8, 5, seed=4), a) > 0.5


def test_grf_prefix_of_more_samples_is_the_same():
    np.testing.assert_array_equal(grf(1, 16, 3, seed=7), grf(1, 16, 10, seed=7)[:3])


def test_grf_spectrum_and_unit_mean_square():
    # project 1-D samples on sin(k pi x) (exact discrete orthogonality) and check the
    # variance decay (pi^2 k^2 + tau^2)^-alpha and E h sum g^2 ~ 1; 4000 samples give
    # ~2-3 % standard errors, so a 12 % tolerance fails only on a real error
    g, alpha, tau = 15, 2.0, 3.0
    h = 1.0 / (g + 1)
    x = h * np.arange(1, g + 1)
    X = grf(1, g, 4000, seed=1, alpha=alpha, tau=tau)
    S = np.sin(np.pi * np.outer(np.arange(1, 4), x))       # modes 1..3
    coef = 2 * h * X @ S.T
    var = coef.var(axis=0)
    lam = (np.pi**2 * np.arange(1, 4) ** 2 + tau**2) ** (-alpha)
    np.testing.assert_allclose(var[1:] / var[0], lam[1:] / lam[0], rtol=0.12)
    # the discrete sines are orthonormal in h sum_j, so E h sum_j g_j^2 = sum of the weights = 1
    assert abs(np.mean(h * np.sum(X**2, axis=1)) - 1.0) < 0.08


def test_grf_mean_option_and_errors():
    assert abs(grf(2, 8, 200, seed=0, mean=5.0).mean() - 5.0) < 0.2
    with pytest.raises(ValueError, match="alpha"):
        grf(2, 8, 1, seed=0, alpha=1.0)
    with pytest.raises(ValueError, match="seed"):
        grf(1, 8, 1, seed=-1)
    with pytest.raises(ValueError, match="dim"):
        grf(4, 2, 1, seed=0)


# ---- residuals against independent operators -------------------------------------------------

@given(st.sampled_from([1, 2, 3]), st.integers(2, 9), st.integers(0, 2**16))
def test_poisson_residual_against_kron_operator(dim, g, seed):
    g = min(g, 5) if dim == 3 else g
    ds = make_dataset("poisson", dim=dim, grid=g, n_samples=3, seed=seed)
    A = ref_laplacian(dim, g)
    c = dim * np.pi**2                       # documented default rhs_scale
    R = (A @ ds.Y.T).T - c * ds.X
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(c * ds.X)
    assert np.all(ds.residual(ds.Y, ds.X) <= RES_TOL)


@given(st.sampled_from([1, 2, 3]), st.integers(2, 8))
def test_helmholtz_and_heat_residuals(dim, g):
    g = min(g, 5) if dim == 3 else g
    A = ref_laplacian(dim, g)
    I = sp.identity(g**dim)
    ds = make_dataset("helmholtz", dim=dim, grid=g, n_samples=2, seed=1, kappa=2.0)
    c = dim * np.pi**2 - 4.0
    R = ((A - 4.0 * I) @ ds.Y.T).T - c * ds.X
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(c * ds.X)
    ds = make_dataset("heat", dim=dim, grid=g, n_samples=2, seed=1, dt=0.02)
    R = ((I + 0.02 * A) @ ds.Y.T).T - ds.X
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(ds.X)


def test_residual_detects_a_wrong_solution():
    ds = make_dataset("poisson", dim=2, grid=8, n_samples=2, seed=0)
    assert np.all(ds.residual(1.01 * ds.Y, ds.X) > 1e-3)
    assert np.all(ds.residual(ds.Y, ds.X) < RES_TOL)


def ref_diffusion_operator(dim, g, a):
    """-div(a grad u), flux form, by a loop over points and their 2d neighbours."""
    h = 1.0 / (g + 1)
    n = g**dim
    A = sp.lil_matrix((n, n))
    for idx in itertools.product(range(g), repeat=dim):
        i = np.ravel_multi_index(idx, (g,) * dim)
        x = np.array([(j + 1) * h for j in idx])
        for ax in range(dim):
            for s in (-1, 1):
                face = x.copy()
                face[ax] += 0.5 * s * h
                af = a(face[None, :])[0] / h**2
                A[i, i] += af
                nb = list(idx)
                nb[ax] += s
                if 0 <= nb[ax] < g:
                    A[i, np.ravel_multi_index(nb, (g,) * dim)] -= af
    return A.tocsr()


@pytest.mark.parametrize("dim,g", [(1, 9), (2, 6), (3, 3)])
def test_diffusion_residual_against_loop_assembly(dim, g):
    ds = make_dataset("diffusion", dim=dim, grid=g, n_samples=3, seed=2, coef_seed=5,
                      coef_contrast=1.5)
    A = ref_diffusion_operator(dim, g, lambda p: diffusion_coefficient(p, 5, 1.5))
    c = dim * np.pi**2
    R = (A @ ds.Y.T).T - c * ds.X
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(c * ds.X)
    assert np.all(ds.residual(ds.Y, ds.X) <= RES_TOL)


def ref_mixed_1d(g):
    """-u'' on x_j = (j+1)/g, u(0) = 0, u'(1) = 0 by the ghost value u_g = u_{g-2}."""
    h = 1.0 / g
    T = ref_second_difference(g, h).tolil()
    T[g - 1, g - 2] = -2.0 / h**2
    return T.tocsr()


@pytest.mark.parametrize("dim,g", [(1, 7), (2, 6), (3, 3)])
def test_poisson_mixed_residual_against_ghost_point_operator(dim, g):
    ds = make_dataset("poisson_mixed", dim=dim, grid=g, n_samples=3, seed=4)
    A = ref_kron_sum(ref_mixed_1d(g), dim)
    c = dim * np.pi**2 / 4
    R = (A @ ds.Y.T).T - c * ds.X
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(c * ds.X)
    np.testing.assert_allclose(ds.points, grid_coords(dim, g, 1.0 / g), atol=1e-15)


@pytest.mark.parametrize("g", [5, 8])
def test_lshape_residual_against_masked_loop_stencil(g):
    ds = make_dataset("poisson_lshape", dim=2, grid=g, n_samples=3, seed=0)
    h = 1.0 / (g + 1)
    inside = [(i, j) for i in range(g) for j in range(g)
              if not ((i + 1) * h >= 0.5 - 1e-12 and (j + 1) * h >= 0.5 - 1e-12)]
    pos = {p: k for k, p in enumerate(inside)}
    A = sp.lil_matrix((len(inside), len(inside)))
    for (i, j), k in pos.items():
        A[k, k] = 4 / h**2
        for nb in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
            if nb in pos:
                A[k, pos[nb]] = -1 / h**2
    assert ds.n == len(inside)
    np.testing.assert_allclose(ds.points, np.array([[(i + 1) * h, (j + 1) * h]
                                                    for i, j in inside]), atol=1e-15)
    c = LSHAPE_FIRST_EIGENVALUE
    R = (A.tocsr() @ ds.Y.T).T - c * ds.X
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(c * ds.X)


# ---- analytic solutions ------------------------------------------------------------------------

def eigenfunction(points, k):
    return np.prod(np.sin(np.pi * np.asarray(k) * points), axis=1)


@pytest.mark.parametrize("dim,k", [(1, (2,)), (2, (1, 3)), (3, (1, 2, 1))])
def test_poisson_discrete_eigenvector_is_solved_exactly(dim, k):
    g = 6 if dim == 3 else 12
    ds = make_dataset("poisson", dim=dim, grid=g, n_samples=0)
    h = 1.0 / (g + 1)
    f = eigenfunction(ds.points, k)
    mu = sum(4 / h**2 * np.sin(np.pi * kk * h / 2) ** 2 for kk in k)
    np.testing.assert_allclose(ds.solve(f), dim * np.pi**2 * f / mu, rtol=1e-12, atol=1e-13)


def convergence_ratio(errors):
    return errors[0] / errors[1]


@pytest.mark.parametrize("pde,opts,shift", [("poisson", {}, 0.0),
                                             ("helmholtz", {"kappa": 3.0}, -9.0)])
def test_second_order_convergence_to_continuous_solution(pde, opts, shift):
    # u = c f / (pi^2 |k|^2 + shift) for f = sin(pi x) sin(2 pi y); halving h divides
    # the max error by 4 for a second-order scheme
    errs = []
    for g in (15, 31):
        ds = make_dataset(pde, dim=2, grid=g, n_samples=0, rhs_scale=1.0, **opts)
        f = eigenfunction(ds.points, (1, 2))
        errs.append(np.max(np.abs(ds.solve(f) - f / (5 * np.pi**2 + shift))))
    assert 3.6 < convergence_ratio(errs) < 4.4


def test_heat_step_of_an_eigenfunction():
    # continuous implicit Euler: u1 = u0 / (1 + dt pi^2 |k|^2), up to O(h^2)
    errs = []
    for g in (15, 31):
        ds = make_dataset("heat", dim=1, grid=g, n_samples=0, dt=0.05)
        f = eigenfunction(ds.points, (3,))
        errs.append(np.max(np.abs(ds.solve(f) - f / (1 + 0.05 * 9 * np.pi**2))))
    assert 3.6 < convergence_ratio(errs) < 4.4


def test_poisson_mixed_manufactured_solution_converges_at_second_order():
    # u = sin(pi x/2) sin(pi y/2): zero on x=0, y=0; zero normal derivative on x=1, y=1
    errs = []
    for g in (12, 24):
        ds = make_dataset("poisson_mixed", dim=2, grid=g, n_samples=0, rhs_scale=1.0)
        u = np.prod(np.sin(0.5 * np.pi * ds.points), axis=1)
        f = 0.5 * np.pi**2 * u
        errs.append(np.max(np.abs(ds.solve(f) - u)))
    assert 3.6 < convergence_ratio(errs) < 4.4


def test_diffusion_manufactured_solution_converges_at_second_order():
    def a(p):
        return 1.0 + p[:, 0] + 2.0 * p[:, 1] ** 2

    def rhs(p):
        x, y = p[:, 0], p[:, 1]
        ux = np.pi * np.cos(np.pi * x) * np.sin(np.pi * y)
        uy = np.pi * np.sin(np.pi * x) * np.cos(np.pi * y)
        lap = -2 * np.pi**2 * np.sin(np.pi * x) * np.sin(np.pi * y)
        return -(a(p) * lap + 1.0 * ux + 4.0 * y * uy)

    errs = []
    for g in (15, 31):
        ds = make_dataset("diffusion", dim=2, grid=g, n_samples=0, rhs_scale=1.0, coefficient=a)
        u = eigenfunction(ds.points, (1, 1))
        errs.append(np.max(np.abs(ds.solve(rhs(ds.points)) - u)))
    assert 3.5 < convergence_ratio(errs) < 4.5


def test_lshape_discrete_eigenvector():
    # sin(2 pi x) sin(2 pi y) vanishes on every edge of the L; with grid + 1 even the
    # re-entrant edges are grid lines, so it is an exact discrete eigenvector
    g = 11
    h = 1.0 / (g + 1)
    ds = make_dataset("poisson_lshape", dim=2, grid=g, n_samples=0, rhs_scale=1.0)
    f = eigenfunction(ds.points, (2, 2))
    mu = 2 * 4 / h**2 * np.sin(np.pi * h) ** 2
    np.testing.assert_allclose(ds.solve(f), f / mu, atol=1e-14 * np.max(np.abs(f)))


def test_diffusion_coefficient_is_positive_with_the_documented_log_rms():
    # midpoint quadrature of (log a)^2 over the unit square: the mean square of the
    # cosine series is exact up to O(h^2) at 200^2 points
    t = (np.arange(200) + 0.5) / 200
    pts = np.stack([c.ravel() for c in np.meshgrid(t, t, indexing="ij")], axis=1)
    a = diffusion_coefficient(pts, coef_seed=3, contrast=0.7)
    assert np.all(a > 0)
    assert abs(np.sqrt(np.mean(np.log(a) ** 2)) - 0.7) < 0.01
    np.testing.assert_array_equal(diffusion_coefficient(pts[:5], 3, contrast=0.0), 1.0)


def test_diffusion_rejects_a_nonpositive_coefficient():
    with pytest.raises(ValueError, match="positive"):
        make_dataset("diffusion", dim=1, grid=4, coefficient=lambda p: p[:, 0] - 0.5)


def test_helmholtz_default_is_well_posed_on_the_coarsest_grids():
    for dim in (1, 2, 3):
        ds = make_dataset("helmholtz", dim=dim, grid=2, n_samples=2, seed=0)
        assert ds.options["kappa"] ** 2 < dim * np.pi**2
        assert np.all(ds.residual(ds.Y, ds.X) < RES_TOL)


def test_mixed_inputs_do_not_vanish_on_the_neumann_faces():
    ds = make_dataset("poisson_mixed", dim=1, grid=16, n_samples=400, seed=0)
    rms = np.sqrt(np.mean(ds.X**2, axis=0))
    assert rms[-1] > 0.5 * rms.max()         # x = 1 is free, unlike a sine-series field
    assert rms[0] < 0.5 * rms.max()          # x = h is next to the Dirichlet face


def test_diffusion_with_unit_coefficient_equals_poisson():
    # two different solvers (sparse LU against the sine transform) on the same equation
    d1 = make_dataset("diffusion", dim=2, grid=9, n_samples=3, seed=6, coef_contrast=0.0)
    d2 = make_dataset("poisson", dim=2, grid=9, n_samples=3, seed=6)
    np.testing.assert_allclose(d1.X, d2.X)
    np.testing.assert_allclose(d1.Y, d2.Y, rtol=1e-11, atol=1e-12)


# ---- nonlinear maps ---------------------------------------------------------------------------

@pytest.mark.parametrize("dim,g", [(1, 9), (2, 6)])
def test_reaction_diffusion_residual_against_kron_operator(dim, g):
    D, rho, dt = 0.2, 8.0, 0.03
    ds = make_dataset("reaction_diffusion", dim=dim, grid=g, n_samples=3, seed=0,
                      D=D, rho=rho, dt=dt)
    A = ref_laplacian(dim, g)
    X, Y = ds.X, ds.Y
    rhs = X + dt * rho * X * (1 - X)
    R = Y + dt * D * (A @ Y.T).T - rhs
    assert np.linalg.norm(R) <= RES_TOL * np.linalg.norm(rhs)
    assert np.all((X > 0) & (X < 1))


def test_reaction_diffusion_without_reaction_is_a_heat_step():
    a = make_dataset("reaction_diffusion", dim=2, grid=7, n_samples=2, seed=3, rho=0.0,
                     D=0.5, dt=0.04)
    b = make_dataset("heat", dim=2, grid=7, n_samples=0, dt=0.02)
    np.testing.assert_allclose(a.Y, b.solve(a.X), rtol=1e-12, atol=1e-14)


def test_reaction_diffusion_steps_compose():
    one = make_dataset("reaction_diffusion", dim=1, grid=10, n_samples=2, seed=1)
    two = make_dataset("reaction_diffusion", dim=1, grid=10, n_samples=2, seed=1, n_steps=2)
    np.testing.assert_allclose(two.Y, one.solve(one.Y), rtol=1e-12)
    assert np.all(two.residual(two.Y, two.X) < RES_TOL)


def ref_arakawa(psi, w, h):
    """Arakawa (1966) J(psi, w) by a loop over points, zero outside the grid."""
    g0, g1 = psi.shape
    P = np.zeros((g0 + 2, g1 + 2))
    W = np.zeros((g0 + 2, g1 + 2))
    P[1:-1, 1:-1], W[1:-1, 1:-1] = psi, w
    J = np.zeros_like(psi)
    for i in range(1, g0 + 1):
        for j in range(1, g1 + 1):
            jpp = ((P[i + 1, j] - P[i - 1, j]) * (W[i, j + 1] - W[i, j - 1])
                   - (P[i, j + 1] - P[i, j - 1]) * (W[i + 1, j] - W[i - 1, j]))
            jpx = (P[i + 1, j] * (W[i + 1, j + 1] - W[i + 1, j - 1])
                   - P[i - 1, j] * (W[i - 1, j + 1] - W[i - 1, j - 1])
                   - P[i, j + 1] * (W[i + 1, j + 1] - W[i - 1, j + 1])
                   + P[i, j - 1] * (W[i + 1, j - 1] - W[i - 1, j - 1]))
            jxp = (W[i, j + 1] * (P[i + 1, j + 1] - P[i - 1, j + 1])
                   - W[i, j - 1] * (P[i + 1, j - 1] - P[i - 1, j - 1])
                   - W[i + 1, j] * (P[i + 1, j + 1] - P[i + 1, j - 1])
                   + W[i - 1, j] * (P[i - 1, j + 1] - P[i - 1, j - 1]))
            J[i - 1, j - 1] = (jpp + jpx + jxp) / (12 * h * h)
    return J


def test_vorticity_step_residual_against_reference_implementation():
    g, nu, dt = 7, 0.01, 0.05
    ds = make_dataset("vorticity", dim=2, grid=g, n_samples=2, seed=0, nu=nu, t_final=dt,
                      n_steps=1)
    h = 1.0 / (g + 1)
    A = ref_laplacian(2, g).tocsc()
    lu = spla.splu(A)

    def rate(w):
        psi = lu.solve(w)
        return ref_arakawa(psi.reshape(g, g), w.reshape(g, g), h).ravel()

    for x, y in zip(ds.X, ds.Y):
        k1 = rate(x)
        k2 = rate(x + dt / 2 * k1)
        k3 = rate(x + dt / 2 * k2)
        k4 = rate(x + dt * k3)
        star = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        r = y + dt * nu * (A @ y) - star
        assert np.linalg.norm(r) <= RES_TOL * np.linalg.norm(star)
    assert np.all(ds.residual(ds.Y, ds.X) < RES_TOL)


def test_arakawa_jacobian_converges_at_second_order():
    def fields(g):
        h = 1.0 / (g + 1)
        x = h * np.arange(1, g + 1)
        X, Y = np.meshgrid(x, x, indexing="ij")
        psi = np.sin(np.pi * X) * np.sin(2 * np.pi * Y)
        w = np.sin(2 * np.pi * X) * np.sin(np.pi * Y)
        exact = (np.pi * np.cos(np.pi * X) * np.sin(2 * np.pi * Y)
                 * np.pi * np.sin(2 * np.pi * X) * np.cos(np.pi * Y)
                 - 2 * np.pi * np.sin(np.pi * X) * np.cos(2 * np.pi * Y)
                 * 2 * np.pi * np.cos(2 * np.pi * X) * np.sin(np.pi * Y))
        return psi[None], w[None], exact, h

    errs = []
    for g in (31, 63):
        psi, w, exact, h = fields(g)
        errs.append(np.max(np.abs(arakawa_jacobian(psi, w, h)[0] - exact)))
    assert 3.6 < convergence_ratio(errs) < 4.4


def test_vorticity_without_viscosity_conserves_energy_and_enstrophy():
    # Arakawa's Jacobian conserves both exactly in space; RK4 leaves O(dt^4) drift
    ds = make_dataset("vorticity", dim=2, grid=16, n_samples=2, seed=1, nu=0.0, t_final=0.5)
    psi0, psi1 = ds.problem.streamfunction(ds.X), ds.problem.streamfunction(ds.Y)
    np.testing.assert_allclose(np.sum(ds.Y * psi1, axis=1), np.sum(ds.X * psi0, axis=1),
                               rtol=1e-5)
    np.testing.assert_allclose(np.sum(ds.Y**2, axis=1), np.sum(ds.X**2, axis=1), rtol=1e-5)
    assert rel(ds.Y, ds.X) > 0.05            # and the flow did move


def test_vorticity_steps_compose():
    one = make_dataset("vorticity", dim=2, grid=8, n_samples=2, seed=2, t_final=0.1, n_steps=1)
    two = make_dataset("vorticity", dim=2, grid=8, n_samples=2, seed=2, t_final=0.2, n_steps=2)
    np.testing.assert_allclose(two.Y, one.solve(one.Y), rtol=1e-12, atol=1e-14)


# ---- linearity and adjoints -------------------------------------------------------------------

def small(pde, dim=None, **kw):
    """A 6^dim data set of 3 samples (dim 2 unless given)."""
    dim = dim if dim is not None else 2
    return make_dataset(pde, dim=dim, grid=6, n_samples=3, seed=0, **kw)


@pytest.mark.parametrize("pde", PDES)
def test_linear_flag_matches_the_map(pde):
    ds = small(pde)
    F, G = ds.X[0], ds.X[1]
    combo = ds.solve(2.0 * F - 0.5 * G)
    deviation = rel(combo, 2.0 * ds.solve(F) - 0.5 * ds.solve(G))
    if ds.linear:
        assert deviation < 1e-12
    else:
        assert deviation > 1e-3


@given(st.sampled_from(LINEAR), st.integers(0, 1000))
def test_adjoint_dot_test(pde, seed):
    ds = small(pde)
    rng = np.random.default_rng(seed)
    f, g = rng.standard_normal((2, ds.n))
    lhs = ds.solve(f) @ g
    rhs = f @ ds.solve_adjoint(g)
    assert abs(lhs - rhs) <= 1e-12 * np.linalg.norm(ds.solve(f)) * np.linalg.norm(g) * 10


def test_mixed_adjoint_differs_from_solve():
    # the ghost-point operator is not symmetric: the adjoint is a different map
    ds = small("poisson_mixed", dim=1)
    f = np.ones(ds.n)
    assert rel(ds.solve_adjoint(f), ds.solve(f)) > 1e-3


@pytest.mark.parametrize("pde", NONLINEAR)
def test_adjoint_of_nonlinear_map_raises(pde):
    with pytest.raises(ValueError, match="linear"):
        small(pde).solve_adjoint(np.zeros(small(pde).n))


# ---- the Dataset container ---------------------------------------------------------------------

@pytest.mark.parametrize("pde", PDES)
def test_shapes_orders_and_scale(pde):
    for dim in DIMS[pde]:
        g = 4 if dim == 3 else 12
        ds = make_dataset(pde, dim=dim, grid=g, n_samples=4, seed=1)
        n = ds.n
        assert ds.X.shape == ds.Y.shape == (4, n) and ds.points.shape == (n, dim)
        assert ds.X.dtype == ds.Y.dtype == np.float64
        assert ds.grid_shape == (g,) * dim
        assert (ds.pde, ds.dim, ds.grid, ds.seed) == (pde, dim, g, 1)
        if ds.mask is None:
            assert n == g**dim
        else:
            assert ds.mask.shape == ds.grid_shape and ds.mask.sum() == n
        # Y is O(1) like X (documented right-hand-side scales)
        rms_y = np.sqrt(np.mean(ds.Y**2))
        assert 0.05 < rms_y < 5.0, (pde, dim, rms_y)
        assert pde in ds.describe() and "h = 1/" in ds.describe()


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_points_are_c_order_and_rows_reshape_to_the_grid(dim):
    g = 4
    ds = make_dataset("poisson", dim=dim, grid=g, n_samples=2, seed=0)
    np.testing.assert_allclose(ds.points, grid_coords(dim, g, 1.0 / (g + 1)), atol=1e-15)
    # input on the grid: X[i] reshaped in C order is the field sampled at `points`
    G = ds.X[0].reshape(ds.grid_shape)
    idx = (1,) * dim
    assert G[idx] == ds.X[0][np.ravel_multi_index(idx, ds.grid_shape)]
    np.testing.assert_array_equal(ds.to_grid(ds.X), ds.X.reshape((2,) + ds.grid_shape))


def test_lshape_mask_and_scatter():
    m = lshape_mask(4)
    np.testing.assert_array_equal(m, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
    ds = make_dataset("poisson_lshape", dim=2, grid=4, n_samples=2, seed=0)
    np.testing.assert_array_equal(ds.mask, m)
    box = ds.to_grid(ds.X)
    assert box.shape == (2, 4, 4) and np.all(box[:, ~m] == 0)
    np.testing.assert_array_equal(box[:, m], ds.X)
    # inputs are the box field at the unmasked points
    np.testing.assert_array_equal(ds.X, grf(2, 4, 2, seed=0)[:, m.ravel()])


def test_tree_is_a_cluster_tree_of_the_points():
    import hssalg
    ds = make_dataset("poisson_lshape", dim=2, grid=10, n_samples=1, seed=0)
    t = ds.tree(leaf_size=8)
    assert isinstance(t, hssalg.ClusterTree)
    assert np.array_equal(np.sort(t.perm), np.arange(ds.n))


def test_slicing_shares_the_operator_and_arrays_are_read_only():
    ds = make_dataset("diffusion", dim=2, grid=6, n_samples=5, seed=3)
    sub = ds[1:3]
    assert isinstance(sub, Dataset) and len(sub) == 2
    np.testing.assert_array_equal(sub.X, ds.X[1:3])
    assert sub.problem is ds.problem and sub.options == ds.options
    assert len(ds[[0, 4]]) == 2 and len(ds[2]) == 1
    with pytest.raises(ValueError):
        ds.X[0, 0] = 1.0


def test_vector_and_block_inputs():
    ds = make_dataset("heat", dim=1, grid=8, n_samples=2, seed=0)
    assert ds.solve(ds.X[0]).shape == (8,)
    np.testing.assert_allclose(ds.solve(ds.X[0]), ds.Y[0])
    assert isinstance(ds.residual(ds.Y[0], ds.X[0]), float)


# ---- seeds ---------------------------------------------------------------------------------

@pytest.mark.parametrize("pde", PDES)
def test_same_seed_same_data_other_seed_other_data(pde):
    a, b, c = small(pde), small(pde), make_dataset(pde, dim=small(pde).dim, grid=6,
                                                   n_samples=3, seed=1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert rel(c.X, a.X) > 0.1


def test_first_samples_do_not_depend_on_the_sample_count():
    a = make_dataset("poisson", dim=2, grid=8, n_samples=3, seed=9)
    b = make_dataset("poisson", dim=2, grid=8, n_samples=10, seed=9)
    np.testing.assert_array_equal(a.X, b.X[:3])


def test_diffusion_operator_depends_on_coef_seed_not_on_seed():
    f = np.random.default_rng(0).standard_normal(36)
    a = make_dataset("diffusion", dim=2, grid=6, n_samples=1, seed=0)
    b = make_dataset("diffusion", dim=2, grid=6, n_samples=1, seed=1)
    c = make_dataset("diffusion", dim=2, grid=6, n_samples=1, seed=0, coef_seed=1)
    np.testing.assert_array_equal(a.solve(f), b.solve(f))
    assert rel(c.solve(f), a.solve(f)) > 1e-3


@pytest.mark.parametrize("pde", PDES)
def test_zero_samples_is_an_operator_only_dataset(pde):
    ds = make_dataset(pde, dim=2, grid=5, n_samples=0)
    assert ds.X.shape == (0, ds.n) and ds.Y.shape == (0, ds.n) and ds.n_samples == 0
    assert ds.solve(np.ones(ds.n)).shape == (ds.n,)
    assert ds.residual(ds.Y, ds.X).shape == (0,)


def test_transforms_in_sample_chunks_equal_one_block(monkeypatch):
    # large grids are processed a few samples at a time; the result must not change
    import hssalg_nn.data.grids as grids_module
    whole = make_dataset("poisson", dim=2, grid=6, n_samples=5, seed=2)
    monkeypatch.setattr(grids_module, "_CHUNK_ENTRIES", 2 * 36)
    chunked = make_dataset("poisson", dim=2, grid=6, n_samples=5, seed=2)
    np.testing.assert_array_equal(chunked.X, whole.X)
    np.testing.assert_allclose(chunked.Y, whole.Y, rtol=1e-14, atol=1e-15)


def test_residual_in_row_chunks_equals_one_block(monkeypatch):
    import hssalg_nn.data.dataset as dataset_module
    ds = make_dataset("heat", dim=2, grid=5, n_samples=7, seed=0)
    U = ds.Y + 1e-3 * ds.X                   # a wrong solution: residuals differ per row
    whole = ds.residual(U, ds.X)
    monkeypatch.setattr(dataset_module, "_RESIDUAL_CHUNK", 2 * ds.n)
    np.testing.assert_array_equal(ds.residual(U, ds.X), whole)
    assert np.all(whole > 1e-6)


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(pde="laplace"), "unknown pde 'laplace'"),
    (dict(pde="vorticity", dim=3), "dim = 3 is not supported for pde 'vorticity'"),
    (dict(pde="poisson_lshape", dim=1), "supported dims are \\(2,\\)"),
    (dict(pde="poisson", grid=1), "grid must be an integer >= 2, got 1"),
    (dict(pde="poisson", n_samples=-1), "n_samples must be an integer >= 0, got -1"),
    (dict(pde="poisson", seed=-3), "seed must be an integer >= 0, got -3"),
    (dict(pde="helmholtz", kappa=10.0), "kappa\\^2 must be below"),
    (dict(pde="heat", dt=0.0), "dt must be > 0"),
])
def test_clear_value_errors(kwargs, match):
    kwargs = {"dim": 2, "grid": 4, "n_samples": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_dataset(**kwargs)


def test_clear_type_errors():
    with pytest.raises(TypeError, match="unknown option\\(s\\) \\['kapa'\\]"):
        make_dataset("helmholtz", dim=1, grid=4, kapa=1.0)
    with pytest.raises(TypeError, match="grid must be an integer"):
        make_dataset("poisson", grid=4.0)
    with pytest.raises(TypeError, match="pde must be a string"):
        make_dataset(3)


def test_bad_sample_arrays_are_rejected():
    ds = make_dataset("poisson", dim=1, grid=4, n_samples=1)
    with pytest.raises(ValueError, match="F must have shape \\(4,\\) or \\(N, 4\\)"):
        ds.solve(np.ones(5))
    with pytest.raises(ValueError, match="non-finite"):
        ds.solve(np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(TypeError, match="complex"):
        ds.solve(np.ones(4, dtype=complex))
    with pytest.raises(ValueError, match="same shape"):
        ds.residual(np.ones((2, 4)), np.ones((1, 4)))


# ---- review fixes --------------------------------------------------------------------------

@pytest.mark.parametrize("idx", [(0, 1), (slice(None), slice(0, 3)), np.array([[0, 1]])])
def test_indexing_that_is_not_a_row_selection_is_rejected(idx):
    # ds[0, 1] used to give a "Dataset" whose X was the single number X[0, 1], of shape (1, 1)
    ds = make_dataset("poisson", dim=1, grid=8, n_samples=4, seed=0)
    with pytest.raises((TypeError, IndexError), match="sample"):
        ds[idx]


def test_dataset_rejects_blocks_of_the_wrong_shape():
    ds = make_dataset("poisson", dim=1, grid=8, n_samples=2, seed=0)
    with pytest.raises(ValueError, match="X and Y must have shape \\(N, 8\\)"):
        Dataset(ds.problem, np.zeros((2, 3)), np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="X and Y must have shape \\(N, 8\\)"):
        Dataset(ds.problem, np.zeros((2, 8)), np.zeros((3, 8)), 0)


@pytest.mark.parametrize("kw", [dict(alpha=400.0), dict(alpha=2.0, tau=1e200), dict(alpha=50.0, tau=1e-3)])
def test_grf_is_finite_with_unit_mean_square_for_extreme_spectra(kw):
    # (pi^2 k^2 + tau^2)^-alpha underflowed to 0 (alpha = 400: a NaN field) or overflowed
    # (tau = 1e200: OverflowError); normalised in logarithms it is a valid field
    g = 16
    X = grf(1, g, 200, seed=0, **kw)
    assert np.all(np.isfinite(X))
    h = 1.0 / (g + 1)
    assert abs(np.mean(h * np.sum(X**2, axis=1)) - 1.0) < 0.25


def test_reaction_diffusion_inputs_do_not_overflow_for_a_large_negative_mean():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = make_dataset("reaction_diffusion", dim=1, grid=8, n_samples=2, seed=0, mean=-500.0)
    assert np.all((ds.X >= 0) & (ds.X < 1e-100))


def test_diffusion_coefficient_of_the_wrong_size_names_the_expected_count():
    with pytest.raises(ValueError, match="5 values"):
        make_dataset("diffusion", dim=1, grid=4, coefficient=lambda p: np.ones(3))
